//! Storage under concurrency: many writers at once never see "database is locked", and a
//! second process writing the same file (the CLI beside a running server) waits its turn.

use crate::harness::{TestServer, test_config};
use vel_tutor::model::{Actor, AuditEvent};

#[test]
fn concurrent_writers_never_see_database_is_locked() {
    let s = TestServer::start();
    let storage = &s.app().storage;
    // A second Storage on the same file: the other process's writer.
    let other =
        vel_tutor::storage::Storage::open(&test_config(s.dir.path(), &[]).database).unwrap();
    std::thread::scope(|scope| {
        for t in 0..16 {
            let st = if t % 2 == 0 { storage.as_ref() } else { &other };
            scope.spawn(move || {
                for i in 0..50 {
                    let e = AuditEvent::security(
                        "test.write",
                        &Actor::default(),
                        Some(serde_json::json!({ "t": t, "i": i })),
                    );
                    st.record_event(&e)
                        .unwrap_or_else(|e| panic!("writer {t} write {i}: {e}"));
                }
            });
        }
    });
    let n = storage
        .audit_rows(&vel_tutor::model::AuditQuery {
            action: Some("test.write".into()),
            limit: 10_000,
            ..Default::default()
        })
        .unwrap()
        .len();
    assert_eq!(n, 800);
}
