//! Live queries over real guest modules: identical subscriptions are computed once, a commit
//! re-runs exactly the queries whose read set it touched, and every refresh reads one
//! snapshot.

use crate::App;
use ferrovex_model::identity::UserIdentity;
use ferrovex_model::json::from_json_str;
use ferrovex_model::Value;
use ferrovex_runtime::auth::{Caller, Identity};
use ferrovex_runtime::sync::subscriptions::{advance, CommitFeed, QueryKey, Subscriptions};
use ferrovex_runtime::wasm::{CallOptions, DeployedModule};
use std::collections::HashMap;
use std::sync::Arc;

fn args(json: &str) -> Value {
    from_json_str(json).unwrap()
}

fn modules(module: &DeployedModule) -> HashMap<String, Arc<DeployedModule>> {
    HashMap::from([(module.hash.clone(), Arc::new(module.clone()))])
}

fn titles(value: &Value) -> Vec<String> {
    let Value::Array(docs) = value else {
        panic!("expected an array, got {value:?}")
    };
    docs.iter()
        .map(|d| d.as_object().unwrap()["title"].as_str().unwrap().to_owned())
        .collect()
}

/// A caller signed in as `subject` (as a verified token gives it).
fn user(subject: &str) -> Caller {
    Caller::user(Identity::new(UserIdentity::from_claims(
        "https://issuer.test",
        subject,
        [("name".to_owned(), Value::from(subject))],
    )))
}

#[test]
fn live_queries_are_shared_per_identity_and_each_user_sees_their_own() {
    let app = App::new("runtime/tests/guests/identity");
    let feed = CommitFeed::attach(&app.store);
    let modules = modules(&app.module);
    let mut subs = Subscriptions::default();
    let whoami = |caller: Caller| QueryKey::new(&app.module, "users:whoami", &args("{}"), caller);
    let ada = subs.subscribe(whoami(user("ada")));
    let ada_again = subs.subscribe(whoami(user("ada")));
    let grace = subs.subscribe(whoami(user("grace")));
    let nobody = subs.subscribe(whoami(Caller::default()));
    let admin = subs.subscribe(whoami(Caller::admin()));
    assert_eq!(ada, ada_again, "one identity, one computation");
    let distinct: std::collections::HashSet<_> = [ada, grace, nobody, admin].into();
    assert_eq!(
        distinct.len(),
        4,
        "every other caller has a result of its own"
    );
    advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(subs.runs, 4);
    let subject = |id| match &subs.result(id).unwrap().outcome {
        Ok(Value::Object(identity)) => identity["tokenIdentifier"].as_str().unwrap().to_owned(),
        Ok(Value::Null) => "nobody".to_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(subject(ada), "https://issuer.test|ada");
    assert_eq!(subject(grace), "https://issuer.test|grace");
    assert_eq!(subject(nobody), "nobody");
    assert_eq!(subject(admin), "nobody");
    // An internal query is a result only for the admin.
    let secret = |caller| QueryKey::new(&app.module, "users:secret", &args("{}"), caller);
    let public = subs.subscribe(secret(user("ada")));
    let private = subs.subscribe(secret(Caller::admin()));
    advance(&mut subs, &feed, &app.host, &app.store, &modules);
    let failed = &subs.result(public).unwrap().outcome;
    assert!(
        matches!(failed, Err((message, _)) if message.contains("users:secret") && !message.contains("users:wipe")),
        "{failed:?}"
    );
    assert_eq!(
        subs.result(private).unwrap().outcome,
        Ok(Value::from("internal, called as nobody"))
    );
}

#[test]
fn identical_subscriptions_are_computed_once() {
    let app = App::new("examples/chat");
    let feed = CommitFeed::attach(&app.store);
    let modules = modules(&app.module);
    let mut subs = Subscriptions::default();
    let key = QueryKey::new(
        &app.module,
        "chat:get_messages",
        &args("{}"),
        Default::default(),
    );
    let first = subs.subscribe(key.clone());
    assert_eq!(subs.subscribe(key.clone()), first);
    let (_, changed) = advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(changed.len(), 1);
    assert_eq!(subs.runs, 1, "two subscribers, one execution");

    app.host
        .run_mutation(
            &app.store,
            &app.module,
            "chat:send_message",
            &args(r#"{"user": "ada", "body": "hi"}"#),
            CallOptions::default(),
        )
        .unwrap();
    let (ts, changed) = advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(changed.into_iter().collect::<Vec<_>>(), vec![first]);
    assert_eq!(subs.runs, 2);
    let result = subs.result(first).unwrap();
    assert_eq!(result.ts, ts);
    let Ok(Value::Array(messages)) = &result.outcome else {
        panic!("{result:?}")
    };
    assert_eq!(messages.len(), 1);

    // One subscriber leaves: the query stays; the last one leaves: it is gone.
    subs.unsubscribe(first);
    assert_eq!(subs.len(), 1);
    subs.unsubscribe(first);
    assert!(subs.is_empty());
}

#[test]
fn a_commit_reruns_only_the_queries_whose_reads_it_touched() {
    let app = App::new("examples/tasks");
    let feed = CommitFeed::attach(&app.store);
    let modules = modules(&app.module);
    let mutate = |path: &str, json: &str| {
        app.host
            .run_mutation(
                &app.store,
                &app.module,
                path,
                &args(json),
                CallOptions::default(),
            )
            .unwrap()
            .value
    };
    let a = mutate(
        "tasks:add",
        r#"{"title": "a", "priority": {"$integer": "AQAAAAAAAAA="}}"#,
    );
    let b = mutate(
        "tasks:add",
        r#"{"title": "b", "priority": {"$integer": "AgAAAAAAAAA="}}"#,
    );

    let mut subs = Subscriptions::default();
    let open = subs.subscribe(QueryKey::new(
        &app.module,
        "tasks:list_open",
        &args("{}"),
        Default::default(),
    ));
    let page = subs.subscribe(QueryKey::new(
        &app.module,
        "tasks:page",
        &args(r#"{"size": {"$integer": "CgAAAAAAAAA="}}"#),
        Default::default(),
    ));
    advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(subs.runs, 2);
    let open_titles =
        |subs: &Subscriptions| titles(subs.result(open).unwrap().outcome.as_ref().unwrap());
    assert_eq!(open_titles(&subs), ["b", "a"]);

    // Completing "a" moves it out of the open range: both queries read it.
    mutate(
        "tasks:complete",
        &format!(r#"{{"id": {}}}"#, ferrovex_model::json::to_json_string(&a)),
    );
    let (_, changed) = advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(subs.runs, 4);
    assert!(changed.contains(&open) && changed.contains(&page));
    assert_eq!(open_titles(&subs), ["b"]);

    // Removing the completed "a" writes only keys outside the open range: list_open does
    // not run again, the page over all tasks does.
    mutate(
        "tasks:remove",
        &format!(r#"{{"id": {}}}"#, ferrovex_model::json::to_json_string(&a)),
    );
    let (ts, changed) = advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert_eq!(subs.runs, 5, "only tasks:page re-ran");
    assert_eq!(changed.into_iter().collect::<Vec<_>>(), vec![page]);
    assert_eq!(subs.result(page).unwrap().ts, ts);

    // A commit that changes nothing either query read runs neither.
    let _ = b;
    let runs = subs.runs;
    app.host
        .run_mutation(
            &app.store,
            &app.module,
            "tasks:add",
            &args(r#"{"title": "  "}"#),
            CallOptions::default(),
        )
        .unwrap_err();
    let (_, changed) = advance(&mut subs, &feed, &app.host, &app.store, &modules);
    assert!(changed.is_empty());
    assert_eq!(
        subs.runs, runs,
        "a failed mutation commits nothing and invalidates nothing"
    );
}
