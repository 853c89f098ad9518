use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use whizard::config::Config;

/// A multi-tenant gateway in front of Thanos.
#[derive(Parser)]
#[command(name = "whizard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway.
    Gateway {
        /// The gateway config file (YAML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validates a gateway config file and prints every error.
    CheckConfig { file: PathBuf },
    /// Reads a password on stdin and prints an argon2id PHC string for `password_hash`.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway { config } => match whizard::gateway::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("whizard gateway: {e}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} tenants, {} users)",
                    file.display(),
                    c.tenants.len(),
                    c.users.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::HashPassword => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("whizard hash-password: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
            // One password per invocation: the first line, without its line ending.
            let password = input.lines().next().unwrap_or("");
            if password.is_empty() {
                eprintln!("whizard hash-password: empty password on stdin");
                return ExitCode::FAILURE;
            }
            match whizard::auth::password::hash_argon2id(password.as_bytes()) {
                Ok(phc) => {
                    println!("{phc}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("whizard hash-password: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
