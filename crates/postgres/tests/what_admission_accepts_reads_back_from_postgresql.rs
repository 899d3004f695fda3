//! Issue 11, item 4 ("what is accepted reads back"): every value `PgStore::admit` accepts
//! comes back equal from a jsonb column, written and read by tokio-postgres as the store
//! does; what it refuses names the field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::rc::Rc;

use common::TestDb;
use graphloop_core::UserContext;
use graphloop_runtime::{RunRecord, Store, StoreError, StoreFactory};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tokio_postgres::Client;

fn run_with(input: Value, user: UserContext) -> RunRecord {
    RunRecord::queued("g", 1, user, input)
}

/// Equal as JSON: a float may come back as the integer of its own digits.
fn same(given: &Value, back: &Value) -> bool {
    match (given, back) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => given == back,
    }
}

/// Writes `value` into a jsonb column and reads it back, both with tokio-postgres.
async fn round_trip(client: &Client, value: &Value) -> Result<Value, String> {
    let row =
        client.query_one("INSERT INTO t (v) VALUES ($1) RETURNING v", &[value]).await.map_err(|e| format!("{e:?}"))?;
    row.try_get::<_, Value>(0).map_err(|e| format!("{e:?}"))
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    db: TestDb,
    store: Rc<dyn Store>,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (db, store) = runtime.block_on(async {
        let db = TestDb::new().await;
        db.client.batch_execute("CREATE TABLE t (v jsonb)").await.unwrap();
        let store = Box::new(db.store()).open().await.unwrap();
        (db, store)
    });
    Setup { runtime, db, store }
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |f| f.is_finite()),
        (1.0..1.797_693_134_862_315_7_f64).prop_map(|m| m * 1e308),
        (-330i32..330, 1.0..10.0f64).prop_map(|(e, m)| m * 10f64.powi(e)),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(-0.0),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![8 => any::<String>(), 2 => "[a-z ]{0,6}", 1 => Just("a\u{0}b".to_owned())]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        3 => float().prop_map(Value::from),
        2 => text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(text(), inner, 0..8).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn every_value_admission_accepts_reads_back_equal_and_every_refusal_is_real() {
    let Setup { runtime, db, store } = setup();
    let mut runner = TestRunner::new(Config { cases: 400, ..Config::default() });
    let outcome = runner.run(&value(), |input| {
        let admitted = store.admit(&run_with(input.clone(), UserContext::new("u")));
        let back = runtime.block_on(round_trip(&db.client, &input));
        match (&admitted, &back) {
            (Ok(()), Ok(back)) if same(&input, back) => Ok(()),
            (Ok(()), _) => Err(TestCaseError::fail(format!("admitted, but read back as {back:?}"))),
            // Refused: the value really does not come back as given.
            (Err(StoreError::Refused { .. }), Err(_)) => Ok(()),
            (Err(StoreError::Refused { .. }), Ok(back)) if !same(&input, back) => Ok(()),
            (Err(refused), _) => Err(TestCaseError::fail(format!("refused ({refused}), but reads back equal"))),
        }
    });
    runtime.block_on(db.drop());
    outcome.unwrap();
}

#[test]
fn notable_numbers_read_back_from_postgresql_as_admission_says() {
    let Setup { runtime, db, store } = setup();
    for f in [f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e16, 1e20, 1e-7, 0.1, -0.0, 3.026_199_944_157_320_3e-52]
    {
        let input = json!({"name": "n.txt", "text": "Net 30 days.", "x": f});
        store.admit(&run_with(input.clone(), UserContext::new("u"))).unwrap();
        let back = runtime.block_on(round_trip(&db.client, &input)).unwrap();
        assert!(same(&input, &back), "{f:e} read back as {back}");
    }
    // What PostgreSQL makes of the number of issue 11: a 309-digit plain decimal.
    let text: String = runtime
        .block_on(db.client.query_one("SELECT ($1::jsonb -> 'x')::text", &[&json!({"x": f64::MAX})]))
        .unwrap()
        .get(0);
    assert_eq!(text, format!("17976931348623157{}", "0".repeat(292)));
    runtime.block_on(db.drop());
}

#[test]
fn a_refusal_names_the_field_and_what_to_do() {
    let Setup { runtime, db, store } = setup();
    let refused = |input: Value, user: UserContext| match store.admit(&run_with(input, user)) {
        Err(refused @ StoreError::Refused { .. }) => refused.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let message = refused(json!({"items": [{}, {}, {}, {"name": "a\u{0}b"}]}), UserContext::new("u"));
    assert!(message.contains("input.items[3].name contains a NUL character (U+0000)"), "{message}");
    let user = UserContext { tenant: Some("t\u{0}".into()), ..UserContext::new("u") };
    let message = refused(json!({}), user);
    assert!(message.contains("user.tenant contains a NUL"), "{message}");
    let message = refused(json!({}), UserContext::new("u\u{0}"));
    assert!(message.contains("user.user_id contains a NUL"), "{message}");
    let user = UserContext { roles: vec!["ok".into(), "\u{0}".into()], ..UserContext::new("u") };
    assert!(refused(json!({}), user).contains("user.roles[1]"));
    let mut deep = json!(1);
    for _ in 0..101 {
        deep = json!([deep]);
    }
    let message = refused(json!({ "deep": deep }), UserContext::new("u"));
    assert!(message.contains("input.deep[0]") && message.contains("flatten it"), "{message}");
    runtime.block_on(db.drop());
}
