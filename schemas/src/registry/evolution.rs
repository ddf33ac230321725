//! The compatibility rule between two definitions of one event type.
//!
//! Within one version the only allowed change is adding optional fields (and editing
//! `doc`, `description`, `owner`, `tier`). Anything else — removing or renaming a field,
//! changing its type, making it required, changing the topic — needs a higher version.
//! A version never goes down.

use super::EventType;

/// Checks that `new` may replace `old`. The error says what changed.
pub fn check_evolution(old: &EventType, new: &EventType) -> Result<(), IncompatibleChange> {
    let refuse = |change| {
        Err(IncompatibleChange {
            event_type: new.name.clone(),
            version: new.version,
            change,
        })
    };
    if old.name != new.name {
        return refuse(Change::Renamed {
            from: old.name.clone(),
        });
    }
    if new.version < old.version {
        return refuse(Change::VersionDown { from: old.version });
    }
    if new.version > old.version {
        return Ok(());
    }
    if old.topic() != new.topic() {
        return refuse(Change::Topic {
            from: old.topic(),
            to: new.topic(),
        });
    }
    for field in &old.fields {
        match new.field(&field.name) {
            None => return refuse(Change::FieldRemoved(field.name.clone())),
            Some(f) if f.ty != field.ty => {
                return refuse(Change::FieldType {
                    field: field.name.clone(),
                    from: field.ty.as_str(),
                    to: f.ty.as_str(),
                });
            }
            Some(f) if f.required && !field.required => {
                return refuse(Change::BecameRequired(field.name.clone()));
            }
            Some(_) => {}
        }
    }
    if let Some(f) = new
        .fields
        .iter()
        .find(|f| f.required && old.field(&f.name).is_none())
    {
        return refuse(Change::NewRequired(f.name.clone()));
    }
    Ok(())
}

/// A change [`check_evolution`] refuses: which type, at which version, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct IncompatibleChange {
    pub event_type: String,
    pub version: u32,
    change: Change,
}

impl IncompatibleChange {
    fn describe(&self) -> String {
        let (name, v) = (&self.event_type, self.version);
        match &self.change {
            Change::Renamed { from } => format!("type name changed from {from:?} to {name:?}"),
            Change::VersionDown { from } => {
                format!("{name}: version went down from {from} to {v}")
            }
            breaking => format!("{name} v{v}: {breaking}; that needs version {}", v + 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Change {
    #[error("renamed from {from:?}")]
    Renamed { from: String },
    #[error("version went down from {from}")]
    VersionDown { from: u32 },
    #[error("topic changed from {from:?} to {to:?}")]
    Topic { from: String, to: String },
    #[error("field `{0}` was removed")]
    FieldRemoved(String),
    #[error("field `{field}` changed type from {from} to {to}")]
    FieldType {
        field: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("field `{0}` became required")]
    BecameRequired(String),
    #[error("new field `{0}` is required")]
    NewRequired(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(version: u32, fields: &str) -> EventType {
        let text = format!("name=\"T\"\nversion={version}\nowner=\"o\"\ntier=\"low\"\n{fields}");
        EventType::from_toml("t.toml", &text).unwrap()
    }

    const A: &str = "[[fields]]\nname=\"a\"\ntype=\"string\"\n";
    const B_OPT: &str = "[[fields]]\nname=\"b\"\ntype=\"int64\"\n";
    const B_REQ: &str = "[[fields]]\nname=\"b\"\ntype=\"int64\"\nrequired=true\n";

    #[test]
    fn adding_optional_fields_is_compatible() {
        check_evolution(&ty(1, A), &ty(1, &format!("{A}{B_OPT}"))).unwrap();
    }

    #[test]
    fn breaking_changes_need_a_new_version() {
        let err = check_evolution(&ty(1, A), &ty(1, &format!("{A}{B_REQ}")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("new field `b` is required; that needs version 2"),
            "{err}"
        );
        let err = check_evolution(&ty(1, A), &ty(1, B_OPT))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `a` was removed"), "{err}");
        let err = check_evolution(&ty(1, A), &ty(1, &A.replace("string", "bool")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("changed type from string to bool"), "{err}");
        check_evolution(&ty(1, A), &ty(2, B_REQ)).unwrap();
        assert!(check_evolution(&ty(2, A), &ty(1, A)).is_err());
    }
}
