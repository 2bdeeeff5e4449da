//! Configuration layering: each layer beats the one below, every problem is reported, and
//! the committed `config.example.toml` matches the declarations and parses cleanly.

use crate::harness::inputs;
use vel_tutor::config::{self, Inputs, Profile, Source, decl};

fn value(i: &Inputs, key: &str) -> (toml::Value, Source) {
    let loaded = config::load(i);
    loaded
        .layered
        .values
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} unset"))
}

fn write_file(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("vel_tutor.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn each_layer_beats_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut i = inputs(d, &[], &[]);
    // 1. profile default (test: 4 workers)
    let (v, s) = value(&i, "server.workers");
    assert_eq!(
        (v.as_integer(), s),
        (Some(4), Source::Default(Profile::Test))
    );
    // 2. file (./vel_tutor.toml is found in the working directory)
    let file = write_file(d, "[server]\nworkers = 5\n");
    let (v, s) = value(&i, "server.workers");
    assert_eq!((v.as_integer(), s), (Some(5), Source::File(file.clone())));
    // 3. the file's [profile.test] table beats its top-level tables; other profiles' do not apply
    write_file(
        d,
        "[server]\nworkers = 5\n[profile.test.server]\nworkers = 6\n[profile.prod.server]\nworkers = 60\n",
    );
    let (v, s) = value(&i, "server.workers");
    assert_eq!(
        (v.as_integer(), s),
        (Some(6), Source::FileProfile(file.clone(), Profile::Test))
    );
    // 4. environment
    i.env
        .insert("VEL_TUTOR__SERVER__WORKERS".into(), "7".into());
    let (v, s) = value(&i, "server.workers");
    assert_eq!(
        (v.as_integer(), s),
        (Some(7), Source::Env("VEL_TUTOR__SERVER__WORKERS".into()))
    );
    // 5. command line
    i.cli
        .push(("--set".into(), "server.workers".into(), "8".into()));
    let (v, s) = value(&i, "server.workers");
    assert_eq!((v.as_integer(), s), (Some(8), Source::Cli("--set".into())));
    assert_eq!(config::load(&i).config.unwrap().server.workers, 8);
}

#[test]
fn profile_comes_from_flag_then_env_then_dev() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = Inputs {
        cwd: dir.path().to_path_buf(),
        ..Inputs::default()
    };
    assert_eq!(config::load(&i).profile, Profile::Dev);
    i.env.insert("VEL_TUTOR_PROFILE".into(), "test".into());
    assert_eq!(config::load(&i).profile, Profile::Test);
    i.profile_flag = Some("prod".into());
    assert_eq!(config::load(&i).profile, Profile::Prod);
    i.profile_flag = Some("staging".into());
    let l = config::load(&i);
    assert!(l.config.is_none());
    assert!(
        l.problems()[0].contains("unknown profile \"staging\""),
        "{:?}",
        l.problems()
    );
}

#[test]
fn named_environment_variables_map_to_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FLY_DATABASE_URL", "sqlite://fly.sqlite3"),
        ("PORT", "4555"),
        ("OPENAI_API_KEY", "sk-operator-key-0000"),
        ("GROQ_BASE_URL", "http://127.0.0.1:9/openai/v1"),
        ("TASK_MASTER_URL", "http://127.0.0.1:18090/mcp"),
        ("SECRET_KEY_BASE_PREVIOUS", "old-one, old-two"),
    ];
    let c = config::load(&inputs(dir.path(), &env, &[])).config.unwrap();
    assert_eq!(c.database.path, dir.path().join("fly.sqlite3"));
    assert_eq!(c.server.bind, "127.0.0.1:4555");
    assert_eq!(
        c.providers["openai"].api_key.as_ref().unwrap().expose(),
        "sk-operator-key-0000"
    );
    assert_eq!(c.providers["groq"].base_url, "http://127.0.0.1:9/openai/v1");
    assert_eq!(
        c.providers["task_master"].base_url,
        "http://127.0.0.1:18090/mcp"
    );
    let prev: Vec<&str> = c
        .auth
        .secret_key_base_previous
        .iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(prev, ["old-one", "old-two"]);

    // DATABASE_URL wins over FLY_DATABASE_URL.
    let mut env2 = env.to_vec();
    env2.push(("DATABASE_URL", "sqlite://main.sqlite3"));
    let c = config::load(&inputs(dir.path(), &env2, &[]))
        .config
        .unwrap();
    assert_eq!(c.database.path, dir.path().join("main.sqlite3"));
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("skb");
    std::fs::write(&f, "from-a-file-0123456789-0123456789-abcdef\n").unwrap();
    let env = [("SECRET_KEY_BASE_FILE", f.to_str().unwrap())];
    let c = config::load(&inputs(dir.path(), &env, &[])).config.unwrap();
    assert_eq!(
        c.auth.secret_key_base.expose(),
        "from-a-file-0123456789-0123456789-abcdef"
    );
}

#[test]
fn prod_without_secrets_names_both_and_every_other_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = inputs(
        dir.path(),
        &[("VEL_TUTOR__SERVER__WORKERS", "many"), ("PORT", "http")],
        &[],
    );
    i.profile_flag = Some("prod".into());
    write_file(
        dir.path(),
        "[server]\nworkres = 3\n[tls]\nenabled = true\ncert = \"missing.pem\"\nkey = \"missing.key\"\n",
    );
    let l = config::load(&i);
    assert!(l.config.is_none());
    let all = l.problems().join("\n");
    for needle in [
        "SECRET_KEY_BASE is required",
        "VAULT_KEY is required",
        "server.workers: expected an integer",
        "PORT must be a port number",
        "server.workres: unknown key",
        "tls.cert: file",
        "tls.key: file",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // One line per problem.
    assert!(l.problems().iter().all(|p| !p.contains('\n')));
}

#[test]
fn prod_refuses_a_short_secret_and_low_bcrypt_cost() {
    let dir = tempfile::tempdir().unwrap();
    let vault = "ab".repeat(32);
    let mut i = inputs(
        dir.path(),
        &[("SECRET_KEY_BASE", "short"), ("VAULT_KEY", &vault)],
        &[("auth.bcrypt_cost", "8")],
    );
    i.profile_flag = Some("prod".into());
    let all = config::load(&i).problems().join("\n");
    assert!(all.contains("SECRET_KEY_BASE is 5 bytes"), "{all}");
    assert!(
        all.contains("auth.bcrypt_cost: 8 is out of range (10..=31)"),
        "{all}"
    );
}

#[test]
fn profile_defaults_follow_the_spec_table() {
    let dir = tempfile::tempdir().unwrap();
    let load = |p: &str| {
        let mut i = inputs(
            dir.path(),
            &[
                ("SECRET_KEY_BASE", &"k".repeat(40)),
                ("VAULT_KEY", &"ab".repeat(32)),
            ],
            &[],
        );
        i.profile_flag = Some(p.into());
        config::load(&i).config.unwrap()
    };
    let (dev, test, prod) = (load("dev"), load("test"), load("prod"));
    assert_eq!(
        (
            dev.server.bind.as_str(),
            test.server.bind.as_str(),
            prod.server.bind.as_str()
        ),
        ("127.0.0.1:4000", "127.0.0.1:0", "[::]:4000")
    );
    assert_eq!(
        (
            dev.database.pool_size,
            test.database.pool_size,
            prod.database.pool_size
        ),
        (10, 4, 15)
    );
    assert_eq!(
        (
            dev.database.timeout_ms,
            test.database.timeout_ms,
            prod.database.timeout_ms
        ),
        (15_000, 5_000, 30_000)
    );
    assert_eq!(
        (
            dev.auth.bcrypt_cost,
            test.auth.bcrypt_cost,
            prod.auth.bcrypt_cost
        ),
        (12, 4, 12)
    );
    assert_eq!(
        (
            dev.rate_limit.enabled,
            test.rate_limit.enabled,
            prod.rate_limit.enabled
        ),
        (false, false, true)
    );
    assert_eq!(
        (dev.errors_detail, test.errors_detail, prod.errors_detail),
        (true, true, false)
    );
    assert_eq!(
        (dev.cors.check_origin, prod.cors.check_origin),
        (false, true)
    );
    assert_eq!(
        dev.cors.origins,
        ["http://localhost:3000", "http://localhost:3001"]
    );
    assert_eq!(prod.logging.format, config::LogFormat::Json);
    assert_eq!(
        dev.database.path,
        dir.path().join("data/vel_tutor_dev.sqlite3")
    );
    assert_eq!(prod.database.synchronous, config::Synchronous::Full);
    assert_eq!(dev.prices["gpt-4o"], (2.50, 10.00));
    assert_eq!(dev.prices["llama-3.1-70b"], (0.59, 0.79));
    assert_eq!(dev.routing["code"], "groq");
    assert_eq!(dev.fallbacks["openai"], ["groq"]);
    assert_eq!(dev.providers["openai"].timeout_ms, 120_000);
    assert_eq!(dev.providers["groq"].max_retries, 2);
    assert_eq!(dev.providers["task_master"].auth_header, "x-api-key");
}

#[test]
fn config_example_matches_the_declarations_and_parses() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    assert_eq!(
        committed,
        decl::example_toml(),
        "config.example.toml is stale: run `vel_tutor config example > config.example.toml`"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(&path, &committed).unwrap();
    let mut i = inputs(dir.path(), &[], &[]);
    i.config_flag = Some(path.clone());
    let l = config::load(&i);
    assert!(l.problems().is_empty(), "{:?}", l.problems());
    // Every key with one default for all profiles is set by the file itself; every other
    // key is there commented out.
    let from_file = l
        .layered
        .values
        .values()
        .filter(|(_, s)| *s == Source::File(path.clone()))
        .count();
    let shared = decl::all()
        .iter()
        .filter(|d| !d.defaults[0].is_empty() && d.defaults.iter().all(|v| *v == d.defaults[0]))
        .count();
    assert_eq!(from_file, shared);
    for d in decl::all() {
        let leaf = decl::segments(&d.key).pop().unwrap();
        assert!(
            committed.contains(&format!("{leaf} = ")),
            "{} missing",
            d.key
        );
    }
    // A priced model with dots in its name round-trips.
    assert_eq!(
        l.config.unwrap().prices["llama-3.1-sonar-small-128k-online"],
        (0.20, 0.20)
    );
}

#[test]
fn config_check_redacts_secrets_and_names_sources() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(
        dir.path(),
        &[("OPENAI_API_KEY", "sk-very-secret-operator-key")],
        &[],
    );
    let l = config::load(&i);
    let text = config::render_effective(&l.layered);
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert!(
        text.contains("providers.openai.api_key = \"[redacted]\"  # env OPENAI_API_KEY"),
        "{text}"
    );
    assert!(
        text.contains("server.workers = 4  # default (test)"),
        "{text}"
    );
    assert!(!text.contains(decl::TEST_VAULT_KEY));
}

#[test]
fn unknown_generic_env_variables_warn() {
    let dir = tempfile::tempdir().unwrap();
    let l = config::load(&inputs(
        dir.path(),
        &[("VEL_TUTOR__SERVER__WRKERS", "3")],
        &[],
    ));
    assert!(l.problems().is_empty());
    assert!(
        l.layered.warnings[0].contains("VEL_TUTOR__SERVER__WRKERS"),
        "{:?}",
        l.layered.warnings
    );
}

#[test]
fn unusable_vault_keys_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let l = config::load(&inputs(
        dir.path(),
        &[
            ("VAULT_KEY", "too-short"),
            ("VAULT_KEYS_PREVIOUS", &"ab".repeat(32)),
        ],
        &[],
    ));
    let all = l.problems().join("\n");
    assert!(
        all.contains("vault.key: vault key: must be 32 bytes"),
        "{all}"
    );
    assert_eq!(l.problems().len(), 1, "the previous key is fine: {all}");
}
