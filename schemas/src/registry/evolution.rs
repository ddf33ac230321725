//! The compatibility rule between two definitions of one event type.
//!
//! Within one version the only allowed change is adding optional fields (and editing
//! `doc`, `description`, `owner`, `tier`). Anything else — removing or renaming a field,
//! changing its type, making it required, changing the topic — needs a higher version.
//! A version never goes down.

use super::EventType;

/// Checks that `new` may replace `old`. The error says what changed.
pub fn check_evolution(old: &EventType, new: &EventType) -> Result<(), String> {
    if old.name != new.name {
        return Err(format!(
            "type name changed from {:?} to {:?}",
            old.name, new.name
        ));
    }
    if new.version < old.version {
        return Err(format!(
            "{}: version went down from {} to {}",
            new.name, old.version, new.version
        ));
    }
    if new.version > old.version {
        return Ok(());
    }
    let breaking = |what: String| {
        Err(format!(
            "{} v{}: {what}; that needs version {}",
            new.name,
            new.version,
            new.version + 1
        ))
    };
    if old.topic() != new.topic() {
        return breaking(format!(
            "topic changed from {:?} to {:?}",
            old.topic(),
            new.topic()
        ));
    }
    for field in &old.fields {
        match new.field(&field.name) {
            None => return breaking(format!("field `{}` was removed", field.name)),
            Some(f) if f.ty != field.ty => {
                return breaking(format!(
                    "field `{}` changed type from {} to {}",
                    field.name,
                    field.ty.as_str(),
                    f.ty.as_str()
                ));
            }
            Some(f) if f.required && !field.required => {
                return breaking(format!("field `{}` became required", field.name));
            }
            Some(_) => {}
        }
    }
    if let Some(f) = new
        .fields
        .iter()
        .find(|f| f.required && old.field(&f.name).is_none())
    {
        return breaking(format!("new field `{}` is required", f.name));
    }
    Ok(())
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
        let err = check_evolution(&ty(1, A), &ty(1, &format!("{A}{B_REQ}"))).unwrap_err();
        assert!(
            err.contains("new field `b` is required; that needs version 2"),
            "{err}"
        );
        let err = check_evolution(&ty(1, A), &ty(1, B_OPT)).unwrap_err();
        assert!(err.contains("field `a` was removed"), "{err}");
        let err = check_evolution(&ty(1, A), &ty(1, &A.replace("string", "bool"))).unwrap_err();
        assert!(err.contains("changed type from string to bool"), "{err}");
        check_evolution(&ty(1, A), &ty(2, B_REQ)).unwrap();
        assert!(check_evolution(&ty(2, A), &ty(1, A)).is_err());
    }
}
