//! `junction passwd`: makes a bcrypt hash for a user's `password` in the
//! configuration (as `nats server passwd` and `htpasswd -B` do).

use clap::Args;
use std::io::BufRead;
use std::process::ExitCode;

/// Flags of `junction passwd`.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    /// The password to hash; read from the first line of standard input when
    /// not given (so it stays out of the shell's history).
    #[arg(value_name = "PASSWORD")]
    pub password: Option<String>,
    /// bcrypt cost: each step doubles the work of every login check (4 to 31).
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
}

/// Prints the hash; exit 1 on an empty password or unreadable input.
pub fn main(args: &PasswdArgs) -> ExitCode {
    let password = match &args.password {
        Some(p) => p.clone(),
        None => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("junction passwd: cannot read the password: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        eprintln!("junction passwd: the password is empty");
        return ExitCode::FAILURE;
    }
    match crate::engine::auth::hash_password(&password, args.cost) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("junction passwd: {e}");
            ExitCode::FAILURE
        }
    }
}
