//! Vault benchmark: seal/open operations per second, and `vault rotate` over 10,000
//! stored keys. Run: `cargo bench --bench vault`. Results go in docs/benchmarks.md.

use std::time::Instant;
use vel_tutor::config::{self, Inputs, Secret};
use vel_tutor::vault::{self, Vault};

fn main() {
    let v = Vault::new(&Secret::new("a1".repeat(32)), &[]).expect("vault");
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
    let n = 200_000;
    let t = Instant::now();
    let mut sealed = Vec::with_capacity(1000);
    for i in 0..n {
        let s = v.seal(key, "user-0000/openai");
        if i < 1000 {
            sealed.push(s);
        }
    }
    let seal_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        let k = v
            .open(&sealed[i % sealed.len()], "user-0000/openai")
            .expect("open");
        assert_eq!(k.expose().len(), key.len());
    }
    let open_s = t.elapsed().as_secs_f64();
    println!(
        "seal: {:.0} ops/s ({:.2} µs each)",
        n as f64 / seal_s,
        seal_s * 1e6 / n as f64
    );
    println!(
        "open: {:.0} ops/s ({:.2} µs each)",
        n as f64 / open_s,
        open_s * 1e6 / n as f64
    );

    // 10,000 stored keys sealed under an old key, then `vault rotate` to a new one.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.sqlite3");
    let old = "a1".repeat(32);
    let new = "b2".repeat(32);
    let load = |vault_key: &str, prev: &str| {
        let mut env = vec![("VAULT_KEY".to_string(), vault_key.to_string())];
        if !prev.is_empty() {
            env.push(("VAULT_KEYS_PREVIOUS".to_string(), prev.to_string()));
        }
        let inputs = Inputs {
            profile_flag: Some("test".into()),
            env: env.into_iter().collect(),
            cli: vec![(
                "--set".into(),
                "database.url".into(),
                db.display().to_string(),
            )],
            cwd: dir.path().to_path_buf(),
            ..Inputs::default()
        };
        config::load(&inputs).config.expect("config")
    };
    let cfg_old = load(&old, "");
    drop(vel_tutor::app::open_storage(&cfg_old).expect("migrate"));
    let v_old = Vault::new(&Secret::new(old.clone()), &[]).expect("vault");
    {
        let mut c = rusqlite::Connection::open(&db).expect("open");
        let tx = c.transaction().expect("tx");
        for i in 0..10_000 {
            let uid = format!("user-{i:05}");
            tx.execute(
                "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) VALUES (?1, ?2, 'x', 'user', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
                rusqlite::params![uid, format!("{uid}@example.com")],
            )
            .expect("user");
            let s = v_old.seal(key, &vault::binding(&uid, "openai"));
            tx.execute(
                "INSERT INTO integrations (user_id, provider, sealed_key, key_id, key_hint, validated_at, created_at, updated_at) VALUES (?1, 'openai', ?2, ?3, 'sk-p…EFGH', 'x', 'x', 'x')",
                rusqlite::params![uid, s.0, v_old.current_key_id()],
            )
            .expect("integration");
        }
        tx.commit().expect("commit");
    }
    let cfg_new = load(&new, &old);
    let v_new = Vault::new(&cfg_new.vault.key, &cfg_new.vault.keys_previous).expect("vault");
    let batch = 500u32;
    let t = Instant::now();
    let r = vel_tutor::rotate::reseal_all(&cfg_new, &v_new, batch).expect("rotate");
    let s = t.elapsed().as_secs_f64();
    assert_eq!(r.resealed, 10_000);
    println!(
        "vault rotate: 10,000 keys in {:.3} s ({:.0} keys/s), batches of {batch}, synchronous=FULL",
        s,
        10_000.0 / s
    );
}
