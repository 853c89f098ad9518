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
        /// Take over the listening sockets of a running gateway (zero-downtime upgrade): start
        /// this, then send SIGQUIT to the old process.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validates a gateway config file and prints every error.
    CheckConfig { file: PathBuf },
    /// Reads a password on stdin and prints an argon2id PHC string for `password_hash`.
    HashPassword,
    /// Runs the Kubernetes controller (or, with `render`, prints what it would apply).
    Reconciler {
        #[command(subcommand)]
        command: Option<ReconcilerCommand>,
        /// Listen address of `/metrics` and `/healthz`.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: std::net::SocketAddr,
        /// Elect a leader with a coordination.k8s.io Lease, so several replicas can run.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        leader_elect: bool,
        /// Name of the leader Lease.
        #[arg(long, default_value = "whizard-reconciler")]
        lease_name: String,
        /// Namespace of the leader Lease (default: $POD_NAMESPACE, else the service account's
        /// namespace, else `default`).
        #[arg(long)]
        lease_namespace: Option<String>,
    },
    /// Prints the CustomResourceDefinitions as YAML.
    Crds,
}

#[derive(Subcommand)]
enum ReconcilerCommand {
    /// Reads CR YAML files from DIR and prints every object the reconciler would apply.
    Render {
        #[arg(long)]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    // One rustls crypto provider for the whole process (pingora, reqwest and kube share it).
    whizard::gateway::tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway { config, upgrade } => match whizard::gateway::run(&config, upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("whizard gateway: {e}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { file } => {
            // Every key error first; then the TLS files (PEM, key pairs, expiry) of a sound config.
            let checked = Config::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    whizard::gateway::tls::check_files(&c)
                        .map(|()| c)
                        .map_err(|e| format!("{}: {e}", file.display()))
                });
            match checked {
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
            }
        }
        Command::Crds => {
            print!("{}", whizard::reconciler::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Reconciler {
            command: Some(ReconcilerCommand::Render { from }),
            ..
        } => match whizard::reconciler::render_dir_warnings(&from) {
            // Warnings (objects adopted from Whizard, fields accepted but not used) go to
            // stderr and do not fail the render.
            Ok((yaml, warnings)) => {
                print!("{yaml}");
                for w in warnings {
                    eprintln!("whizard reconciler render: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            // Everything else rendered: print it, then the problems, and fail.
            Err(whizard::reconciler::RenderError::Problems { output, problems }) => {
                print!("{output}");
                for p in problems {
                    eprintln!("whizard reconciler render: {p}");
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("whizard reconciler render: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Reconciler {
            command: None,
            metrics_addr,
            leader_elect,
            lease_name,
            lease_namespace,
        } => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("WHIZARD_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_ansi(false)
                .try_init();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("whizard reconciler: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let leader = leader_elect.then(|| {
                let ns = lease_namespace.unwrap_or_else(default_namespace);
                whizard::reconciler::leader::LeaderConfig::new(&ns, &lease_name, &identity())
            });
            let opts = whizard::reconciler::RunOptions {
                metrics_addr,
                leader,
            };
            match rt.block_on(whizard::reconciler::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("whizard reconciler: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

/// The Lease namespace when none is given: the pod's own.
fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "default".to_string())
}

/// This replica's leader-election identity: the pod name, else the host name and pid.
fn identity() -> String {
    if let Some(p) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return p;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{host}-{}", std::process::id())
}
