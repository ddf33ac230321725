//! `evd keys`: master keyrings for consumers and the auditor, derived ones for agents.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use evd_ops::load;
use evd_schemas::{Key, MasterKeyring};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a master keyring with one random key (file mode 0600, never overwritten).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        key_id: u32,
    },
    /// Write a copy of a master keyring with one more random key (rotation).
    Rotate {
        #[arg(long)]
        master: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Derive one agent's keyring from the master keyring.
    Derive {
        #[arg(long)]
        master: PathBuf,
        /// The agent id (by default agents use their host name).
        #[arg(long)]
        agent: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn random_key() -> Result<Key> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow!("reading OS randomness: {e}"))?;
    Ok(Key(bytes))
}

pub fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out, key_id } => {
            let ring = MasterKeyring::new([(key_id, random_key()?)]);
            load::write_secret(&out, &ring.to_toml())?;
            println!("wrote master keyring {} (key id {key_id})", out.display());
        }
        KeysCommand::Rotate { master, out } => {
            let mut ring = load::master_keyring(&master)?;
            let next = ring.key_ids().max().unwrap_or(0).checked_add(1);
            let Some(next) = next else {
                bail!("key ids are exhausted")
            };
            ring.insert(next, random_key()?);
            load::write_secret(&out, &ring.to_toml())?;
            println!(
                "wrote {} with new key id {next}; roll consumers first, then re-derive agents",
                out.display()
            );
        }
        KeysCommand::Derive { master, agent, out } => {
            let ring = load::master_keyring(&master)?;
            let agent_ring = ring.derive_agent_keyring(&agent);
            load::write_secret(&out, &agent_ring.to_toml())?;
            println!("wrote agent keyring {} for {agent:?}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
