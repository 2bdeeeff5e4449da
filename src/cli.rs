//! The command line (SPEC §1): argument parsing with clap and one function per command.
//! Commands print for humans and return an exit code; the work itself lives in the library.

use crate::config::{self, Config, Inputs, Loaded};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "vel_tutor",
    version,
    about = "AI tutoring and agent backend: one binary, SQLite inside"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (the main job).
    Serve(ConfigArgs),
    /// Apply schema.sql migrations and exit.
    Migrate(ConfigArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// User administration from the machine itself.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Vault tools.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Secret tools.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective config (secrets redacted) with each value's source, and every
    /// problem; exit 1 on any.
    Check(ConfigArgs),
    /// Print a config file documenting every key with its default.
    Example,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an admin (the first one, typically). The password comes from
    /// VEL_TUTOR_ADMIN_PASSWORD or the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Re-seal every stored key under the current VAULT_KEY, in batches (one transaction
    /// each). Safe to interrupt and run again; the server may keep running.
    Rotate {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Print a fresh random secret (64 chars) for SECRET_KEY_BASE or VAULT_KEY.
    Gen,
}

/// Flags shared by every command that reads the configuration.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Config file (else VEL_TUTOR_CONFIG, else ./vel_tutor.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// dev, test or prod (else VEL_TUTOR_PROFILE, else dev).
    #[arg(long)]
    pub profile: Option<String>,
    /// Listen address, e.g. 127.0.0.1:8080 (overrides server.bind).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Database URL, e.g. sqlite://data/app.sqlite3 (overrides database.url).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Set any key: --set server.workers=8 (repeatable; highest layer).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The loader's inputs: this process's environment plus these flags.
    pub fn inputs(&self) -> Inputs {
        let mut inputs = Inputs::from_process();
        inputs.profile_flag = self.profile.clone();
        inputs.config_flag = self.config.clone();
        if let Some(b) = &self.bind {
            inputs
                .cli
                .push(("--bind".into(), "server.bind".into(), b.clone()));
        }
        if let Some(u) = &self.database_url {
            inputs
                .cli
                .push(("--database-url".into(), "database.url".into(), u.clone()));
        }
        for kv in &self.set {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            inputs
                .cli
                .push(("--set".into(), k.trim().to_string(), v.to_string()));
        }
        inputs
    }
}

/// Parses the process arguments and runs the command; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(&a),
        Command::Migrate(a) => migrate(&a),
        Command::Config {
            command: ConfigCommand::Check(a),
        } => config_check(&a),
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", config::decl::example_toml());
            0
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    name,
                    config,
                },
        } => admin_create(&email, name.as_deref(), &config),
        Command::Vault {
            command: VaultCommand::Rotate { batch, config },
        } => vault_rotate(batch, &config),
        Command::Secret {
            command: SecretCommand::Gen,
        } => {
            println!("{}", config::generate_secret());
            0
        }
    }
}

fn report_problems(loaded: &Loaded) {
    for w in &loaded.layered.warnings {
        eprintln!("warning: {w}");
    }
    for p in loaded.problems() {
        eprintln!("error: {p}");
    }
}

/// Loads a valid config or prints every problem and returns the exit code.
fn valid_config(loaded: Loaded) -> Result<Config, i32> {
    report_problems(&loaded);
    match loaded.config {
        Some(c) => Ok(c),
        None => {
            eprintln!(
                "vel_tutor: {} configuration problem(s); fix them and start again (`vel_tutor config check` shows the effective config)",
                loaded.problems().len()
            );
            Err(1)
        }
    }
}

fn serve(args: &ConfigArgs) -> i32 {
    let inputs = args.inputs();
    let (loaded, generated) = match config::load_generating(&inputs) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: cannot write dev secrets: {e}");
            return 1;
        }
    };
    let warnings = loaded.layered.warnings.clone();
    let config = match valid_config(loaded) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::logging::init(&config.logging);
    if let Some(path) = generated {
        eprintln!(
            "\n************************************************************************\n\
             WARNING: generated dev-only secrets in {} (mode 0600).\n\
             They sign logins and seal stored API keys on this machine only.\n\
             For production set SECRET_KEY_BASE and VAULT_KEY (`vel_tutor secret gen`).\n\
             ************************************************************************\n",
            path.display()
        );
    }
    let profile = config.profile;
    let grace = Duration::from_secs(config.server.shutdown_grace_s);
    let db = config.database.path.display().to_string();
    // Handlers first: a signal arriving while we start must not kill the process.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::warn!("cannot handle signal {sig}: {e}");
        }
    }
    let running = match crate::app::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for w in &warnings {
        let event = crate::model::AuditEvent::security(
            "config.warning",
            &Default::default(),
            Some(serde_json::json!({ "problem": w })),
        );
        if let Err(e) = running.app.storage.record_event(&event) {
            log::warn!("could not audit a config warning: {e}");
        }
    }
    println!(
        "vel_tutor {} listening on {} (profile {profile}, database {db})",
        env!("CARGO_PKG_VERSION"),
        running.url()
    );
    if let Some(public) = &running.app.config.server.public_url {
        println!("public URL: {public}");
    }
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!(
        "shutting down: waiting up to {}s for in-flight requests",
        grace.as_secs()
    );
    let left = running.shutdown(grace);
    if left > 0 {
        log::warn!("shutdown: {left} request(s) still running at the deadline");
    }
    log::info!("stopped");
    0
}

fn migrate(args: &ConfigArgs) -> i32 {
    let config = match valid_config(config::load(&args.inputs())) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = crate::storage::Storage::open(&config.database).and_then(|s| {
        s.check_schema()?;
        s.migrate()
    });
    match result {
        Ok(r) if r.applied.is_empty() => {
            println!(
                "database {}: up to date at version {}",
                config.database.path.display(),
                r.current
            );
            0
        }
        Ok(r) => {
            println!(
                "database {}: applied {:?}; now at version {}",
                config.database.path.display(),
                r.applied,
                r.current
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn config_check(args: &ConfigArgs) -> i32 {
    let loaded = config::load(&args.inputs());
    println!("# profile: {}", loaded.profile);
    if let Some(f) = &loaded.layered.file {
        println!("# file: {}", f.display());
    }
    print!("{}", config::render_effective(&loaded.layered));
    report_problems(&loaded);
    if loaded.problems().is_empty() {
        println!("# ok: no problems");
        0
    } else {
        1
    }
}

fn admin_create(email: &str, name: Option<&str>, args: &ConfigArgs) -> i32 {
    use crate::auth::password::{Email, Password};
    let config = match valid_config(config::load(&args.inputs())) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let email = match Email::parse(email) {
        Ok(e) => e,
        Err(m) => {
            eprintln!("error: email {m}");
            return 1;
        }
    };
    let raw = match std::env::var("VEL_TUTOR_ADMIN_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (from VEL_TUTOR_ADMIN_PASSWORD, or one line on stdin):");
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("error: could not read the password from stdin");
                return 1;
            }
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let password = match Password::parse(&raw, email.as_str()) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("error: {m}");
            return 1;
        }
    };
    let result = crate::app::open_storage(&config).and_then(|storage| {
        let hash = password
            .hash(config.auth.bcrypt_cost)
            .map_err(crate::storage::StorageError::Database)?;
        let actor = crate::model::Actor {
            user_agent: Some("vel_tutor admin create".into()),
            ..Default::default()
        };
        let audit = crate::model::AuditEvent::security(
            "user.admin_created",
            &actor,
            Some(serde_json::json!({ "email": email.as_str() })),
        );
        storage.create_user(
            email.as_str(),
            name,
            &hash,
            crate::model::Role::Admin,
            &audit,
        )
    });
    match result {
        Ok(u) => {
            println!("created admin {} ({})", u.email, u.id);
            0
        }
        Err(crate::storage::StorageError::Conflict(_)) => {
            eprintln!(
                "error: an account with email {} already exists",
                email.as_str()
            );
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn vault_rotate(batch: u32, args: &ConfigArgs) -> i32 {
    let config = match valid_config(config::load(&args.inputs())) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let vault = match crate::vault::Vault::new(&config.vault.key, &config.vault.keys_previous) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match crate::rotate::reseal_all(&config, &vault, batch.max(1)) {
        Ok(r) => {
            println!(
                "re-sealed {} key(s) under vault key {}; {} already current or changed meanwhile; {} could not be opened",
                r.resealed,
                vault.current_key_id(),
                r.skipped,
                r.failed.len()
            );
            for f in &r.failed {
                eprintln!("error: {f}");
            }
            if r.failed.is_empty() { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
