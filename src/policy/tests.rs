use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::fixtures::FixturePrincipal;
use super::*;

fn principal(sub: &str, roles: &[&str], scopes: &[&str], tenant: Option<&str>) -> Principal {
    FixturePrincipal {
        sub: sub.into(),
        issuer: "https://issuer.test".into(),
        client_id: None,
        tenant: tenant.map(str::to_owned),
        roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        claims: Map::new(),
    }
    .principal()
}

struct T {
    name: String,
    tags: Vec<String>,
    scopes: Vec<String>,
    metadata: Map<String, Value>,
}

fn tool(name: &str, tags: &[&str], scopes: &[&str]) -> T {
    T {
        name: name.into(),
        tags: tags.iter().map(|s| (*s).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        metadata: Map::new(),
    }
}

impl T {
    fn facts(&self) -> ToolFacts<'_> {
        ToolFacts { name: &self.name, tags: &self.tags, metadata: &self.metadata, scopes: &self.scopes, server: None }
    }
}

fn policy(yaml: &str, tools: &[&T]) -> Policy {
    PolicySet::from_sources([("p".to_owned(), yaml)]).unwrap_or_else(|e| panic!("{e}")).bind(tools.iter().map(|t| t.facts()))
}

fn call(p: &Policy, who: &Principal, t: &T, args: Value) -> Decision {
    p.decide(who, &t.facts(), Stage::Call(&args), &RequestFacts::default(), None)
}

#[test]
fn globs_are_anchored() {
    assert!(glob(b"search*", b"search"));
    assert!(glob(b"search*", b"search_docs"));
    assert!(!glob(b"search*", b"unsafe-search-exec"));
    assert!(!glob(b"*search", b"search-exec"));
    assert!(glob(b"*search*", b"unsafe-search-exec"));
    assert!(glob(b"crm.?et_*", b"crm.get_account"));
    assert!(!glob(b"crm.?et_*", b"crm.gget_account"));
    assert!(glob(b"*", b"anything"));
    assert!(!glob(b"a", b"ab"));
}

#[test]
fn no_matching_allow_is_a_default_deny() {
    let t = tool("report", &[], &[]);
    let p = policy("rules:\n  - {id: other, effect: allow, tools: [different]}\n", &[&t]);
    let d = call(&p, &principal("a", &[], &[], None), &t, json!({}));
    assert_eq!(d.rule, "default-deny");
    assert!(matches!(d.outcome, Err(Denial::Forbidden { .. })));
}

#[test]
fn deny_overrides_allow() {
    let t = tool("send_email", &["comms"], &[]);
    let yaml = r#"
rules:
  - {id: staff, effect: allow, tools: ["tag:comms"], roles: [staff, contractor]}
  - id: no-pii-for-contractors
    effect: deny
    tools: [send_email]
    roles: [contractor]
    when: has(args.contains_pii) && args.contains_pii
    reason: contractors may not send sensitive data
"#;
    let p = policy(yaml, &[&t]);
    let contractor = principal("c", &["contractor"], &[], None);
    let d = call(&p, &contractor, &t, json!({"contains_pii": true}));
    assert_eq!(d.rule, "p/no-pii-for-contractors");
    assert_eq!(d.outcome, Err(Denial::Forbidden { reason: "contractors may not send sensitive data".into() }));
    assert_eq!(call(&p, &contractor, &t, json!({"contains_pii": false})).outcome, Ok(()));
    let staff = principal("s", &["staff"], &[], None);
    assert_eq!(call(&p, &staff, &t, json!({"contains_pii": true})).rule, "p/staff");
    // At list time the deny on arguments does not hide the tool.
    assert!(p.visible(&contractor, &t.facts(), &RequestFacts::default()));
}

#[test]
fn role_gated_model_with_step_up() {
    let t = tool("gpt-4-medical", &["medical"], &[]);
    let p = policy(
        "rules:\n  - {id: doctors, effect: allow, tools: [gpt-4-medical], roles: [doctor], scopes: [\"medical:write\"], reason: only licensed doctors}\n",
        &[&t],
    );
    let doctor = principal("d", &["doctor"], &["medical:write"], None);
    assert_eq!(call(&p, &doctor, &t, json!({})).outcome, Ok(()));
    let nurse = principal("n", &["nurse"], &["medical:write"], None);
    assert_eq!(call(&p, &nurse, &t, json!({})).outcome, Err(Denial::Forbidden { reason: "only licensed doctors".into() }));
    assert!(!p.visible(&nurse, &t.facts(), &RequestFacts::default()));
    let doctor_without = principal("d2", &["doctor"], &[], None);
    let d = call(&p, &doctor_without, &t, json!({}));
    assert_eq!(
        d.outcome,
        Err(Denial::InsufficientScope {
            needed: vec!["medical:write".into()],
            missing: vec!["medical:write".into()],
            challenge: vec!["medical:write".into()]
        })
    );
    assert_eq!(d.rule, "p/doctors");
}

#[test]
fn tool_scopes_are_the_floor() {
    let t = tool("records", &[], &["records:read"]);
    let p = policy("rules:\n  - {id: all, effect: allow, tools: [\"*\"]}\n", &[&t]);
    let d = call(&p, &principal("a", &[], &[], None), &t, json!({}));
    assert_eq!(d.rule, "tool:records:scopes");
    assert!(matches!(d.outcome, Err(Denial::InsufficientScope { .. })));
    // The step-up names the tool's scopes and the rule's.
    let p = policy("rules:\n  - {id: w, effect: allow, tools: [records], scopes: [\"records:write\"]}\n", &[&t]);
    let d = call(&p, &principal("a", &[], &["records:read"], None), &t, json!({}));
    assert_eq!(
        d.outcome,
        Err(Denial::InsufficientScope {
            needed: vec!["records:read".into(), "records:write".into()],
            missing: vec!["records:write".into()],
            challenge: vec!["records:read".into(), "records:write".into()]
        })
    );
}

#[test]
fn a_step_up_challenge_keeps_the_scopes_the_token_holds() {
    // MCP 2025-11-25 clients replace their scopes with the challenge's: alice, holding
    // calendar:read, must not lose it when a write needs calendar:write.
    let t = tool("write", &[], &["calendar:write"]);
    let p = policy("rules:\n  - {id: all, effect: allow, tools: [\"*\"]}\n", &[&t]);
    let d = call(&p, &principal("alice", &[], &["calendar:read", "mail:send"], None), &t, json!({}));
    let Err(Denial::InsufficientScope { needed, missing, challenge }) = d.outcome else { panic!("{d:?}") };
    assert_eq!((needed, missing), (vec!["calendar:write".to_owned()], vec!["calendar:write".to_owned()]));
    assert_eq!(challenge, ["calendar:read", "calendar:write", "mail:send"]);
}

#[test]
fn conditions_see_principal_tool_args_and_request() {
    let t = tool("get_record", &["records"], &[]);
    let yaml = r#"
rules:
  - id: own-tenant
    effect: allow
    tools: ["tag:records"]
    when: args.tenant == principal.tenant && tool.name == "get_record" && request.time > timestamp("2020-01-01T00:00:00Z")
    reason: records of your own tenant only
"#;
    let p = policy(yaml, &[&t]);
    let acme = principal("a", &[], &[], Some("acme"));
    assert_eq!(call(&p, &acme, &t, json!({"tenant": "acme", "id": 1})).outcome, Ok(()));
    let d = call(&p, &acme, &t, json!({"tenant": "globex", "id": 1}));
    assert_eq!((d.rule.as_str(), d.outcome.is_err()), ("p/own-tenant", true));
    // A condition that cannot be evaluated fails closed.
    let d = call(&p, &acme, &t, json!({"id": 1}));
    assert!(d.outcome.is_err());
    // Listed: some arguments could be allowed.
    assert!(p.visible(&acme, &t.facts(), &RequestFacts::default()));
}

#[test]
fn a_failing_deny_condition_denies() {
    let t = tool("x", &[], &[]);
    let p =
        policy("rules:\n  - {id: a, effect: allow, tools: [x]}\n  - {id: d, effect: deny, tools: [x], when: \"args.size > 10\"}\n", &[&t]);
    let d = call(&p, &principal("a", &[], &[], None), &t, json!({}));
    assert_eq!(d.rule, "p/d");
}

#[test]
fn claims_are_available_to_conditions() {
    let t = tool("x", &[], &[]);
    let p = policy("rules:\n  - {id: a, effect: allow, tools: [x], when: \"principal.claims.license.state == 'active'\"}\n", &[&t]);
    let mut who = principal("a", &[], &[], None);
    who.claims.insert("license".into(), json!({"state": "active"}));
    assert_eq!(call(&p, &who, &t, json!({})).outcome, Ok(()));
    who.claims.insert("license".into(), json!({"state": "revoked"}));
    assert!(call(&p, &who, &t, json!({})).outcome.is_err());
}

#[test]
fn bad_policy_files_fail_with_file_and_rule() {
    for (yaml, at) in [
        ("rules:\n  - {id: a, effect: allow, tools: [x], when: \"args.x ==\"}\n", "rules[0] (a)"),
        ("rules:\n  - {id: a, effect: allow, tools: [x], when: \"secrets.key == 1\"}\n", "rules[0] (a)"),
        ("rules:\n  - {id: a, effect: allow, tools: []}\n", "rules[0] (a)"),
        ("rules:\n  - {id: a, effect: maybe, tools: [x]}\n", "rules[0].effect"),
        ("rules:\n  - {id: a, effect: allow, tools: [x], colour: red}\n", "rules[0]"),
        ("rules:\n  - {id: a, effect: allow, tools: [x]}\n  - {id: a, effect: deny, tools: [x]}\n", "rules[1] (a)"),
        ("rules:\n  - {id: a, effect: allow, tools: [\"bad pattern!\"]}\n", "rules[0] (a)"),
    ] {
        let e = PolicySet::from_sources([("f".to_owned(), yaml)]).map(|_| ()).unwrap_err();
        assert_eq!(e.file, "f");
        assert!(e.at.starts_with(at), "{yaml}: {e}");
    }
    let e = PolicySet::from_sources([("f".to_owned(), "rules:\n  - {id: a, effect: allow, tools: [x], when: \"secrets.key == 1\"}\n")])
        .map(|_| ())
        .unwrap_err();
    assert!(e.message.contains("secrets"), "{e}");
}

#[test]
fn comprehension_variables_are_not_free() {
    assert!(Condition::compile("principal.roles.exists(r, r == 'doctor')").is_ok());
    assert!(Condition::compile("args.items.all(i, i.qty < 10)").is_ok_and(|c| c.uses_args));
    assert!(Condition::compile("r == 'doctor'").is_err());
}

#[test]
fn without_policy_files_tool_scopes_decide() {
    let t = tool("x", &[], &["s"]);
    let p = PolicySet::default().bind([t.facts()]);
    assert_eq!(call(&p, &principal("a", &[], &["s"], None), &t, json!({})).outcome, Ok(()));
    assert!(call(&p, &principal("a", &[], &[], None), &t, json!({})).outcome.is_err());
}

#[test]
fn the_trace_explains_each_step() {
    let t = tool("x", &[], &[]);
    let p = policy("rules:\n  - {id: a, effect: allow, tools: [x], roles: [admin]}\n", &[&t]);
    let mut trace = Vec::new();
    let args = json!({});
    p.decide(&principal("a", &["user"], &[], None), &t.facts(), Stage::Call(&args), &RequestFacts::default(), Some(&mut trace));
    assert!(trace.iter().any(|l| l.contains("p/a (allow): not applicable, needs a role of admin")), "{trace:?}");
    assert!(trace.last().is_some_and(|l| l.contains("deny")), "{trace:?}");
}

/// Rules from a small grammar. Allow conditions on arguments read `tenant`; deny conditions
/// on arguments read `flag`. With `contradicting`, denies may also read `tenant`, which can
/// refuse exactly the arguments an allow needs.
fn rule_strategy(contradicting: bool) -> impl Strategy<Value = String> {
    let target = prop_oneof![Just("tool_a"), Just("tool_*"), Just("tag:t1"), Just("other")];
    let scopes = prop::collection::vec(prop_oneof![Just("s1"), Just("s2")], 0..2);
    let roles = prop::collection::vec(prop_oneof![Just("r1"), Just("r2")], 0..2);
    let allow_when = prop_oneof![
        Just(None),
        Just(Some("args.tenant == principal.tenant")),
        Just(Some("principal.sub == 'alice'")),
        Just(Some("'r1' in principal.roles"))
    ];
    let deny_when = if contradicting {
        prop_oneof![
            Just(None),
            Just(Some("has(args.flag) && args.flag")),
            Just(Some("args.tenant == principal.tenant")),
            Just(Some("principal.sub == 'bob'"))
        ]
        .boxed()
    } else {
        prop_oneof![Just(None), Just(Some("has(args.flag) && args.flag")), Just(Some("principal.sub == 'bob'"))].boxed()
    };
    let allow = (target.clone(), scopes.clone(), roles.clone(), allow_when).prop_map(|(t, s, r, w)| rule_yaml("allow", t, &s, &r, w));
    let deny = (target, scopes, roles, deny_when).prop_map(|(t, s, r, w)| rule_yaml("deny", t, &s, &r, w));
    prop_oneof![allow, deny]
}

fn rule_yaml(effect: &str, target: &str, scopes: &[&str], roles: &[&str], when: Option<&str>) -> String {
    let when = when.map(|w| format!(", when: \"{w}\"")).unwrap_or_default();
    format!("effect: {effect}, tools: [\"{target}\"], scopes: [{}], roles: [{}]{when}}}", scopes.join(", "), roles.join(", "))
}

/// The argument sets the properties try: the grammar's conditions only ever read these.
fn candidate_args(tenant: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for t in [tenant, "someone-else"] {
        for flag in [None, Some(true), Some(false)] {
            let mut m = Map::new();
            m.insert("tenant".into(), json!(t));
            if let Some(f) = flag {
                m.insert("flag".into(), json!(f));
            }
            out.push(Value::Object(m));
        }
    }
    out
}

fn yaml_of(rules: &[String]) -> String {
    let mut y = String::from("rules:\n");
    if rules.is_empty() {
        y = "rules: []\n".into();
    }
    for (i, r) in rules.iter().enumerate() {
        y.push_str(&format!("  - {{id: r{i}, {r}\n"));
    }
    y
}

fn principal_strategy() -> impl Strategy<Value = (&'static str, Vec<&'static str>, Vec<&'static str>)> {
    (
        prop_oneof![Just("alice"), Just("bob")],
        prop::collection::vec(prop_oneof![Just("r1"), Just("r2")], 0..2),
        prop::collection::vec(prop_oneof![Just("s1"), Just("s2")], 0..2),
    )
}

/// (shown in tools/list, callable with some candidate arguments)
fn shown_and_callable(yaml: &str, sub: &str, roles: &[&str], scopes: &[&str]) -> (bool, bool) {
    let t = tool("tool_a", &["t1"], &[]);
    let p = policy(yaml, &[&t]);
    let who = principal(sub, roles, scopes, Some("acme"));
    let shown = p.visible(&who, &t.facts(), &RequestFacts::default());
    let callable = candidate_args("acme").iter().any(|a| call(&p, &who, &t, a.clone()).outcome.is_ok());
    (shown, callable)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A tool hidden from a caller is never callable by it, whatever the rules.
    #[test]
    fn hidden_tools_are_never_callable(rules in prop::collection::vec(rule_strategy(true), 0..6), (sub, roles, scopes) in principal_strategy()) {
        let yaml = yaml_of(&rules);
        let (shown, callable) = shown_and_callable(&yaml, sub, &roles, &scopes);
        prop_assert!(shown || !callable, "hidden but callable:\n{}", yaml);
    }

    /// A listed tool is callable with some arguments, when deny conditions on arguments do not
    /// contradict allow conditions on the same argument.
    #[test]
    fn listed_tools_are_callable_with_some_arguments(rules in prop::collection::vec(rule_strategy(false), 0..6), (sub, roles, scopes) in principal_strategy()) {
        let yaml = yaml_of(&rules);
        let (shown, callable) = shown_and_callable(&yaml, sub, &roles, &scopes);
        prop_assert_eq!(shown, callable, "rules:\n{}", yaml);
    }
}

/// The black-box run's findings: a deny rule must not stop applying because the forbidden
/// value arrives as another JSON type (a list, a number), and an allow rule must not start
/// applying for the same reason.
#[test]
fn comparisons_of_different_kinds_fail_closed() {
    let t = tool("search", &[], &[]);
    let who = principal("a", &[], &[], Some("acme"));
    let deny = |when: &str| {
        let yaml = format!(
            "rules:\n  - {{id: all, effect: allow, tools: [search]}}\n  - {{id: no, effect: deny, tools: [search], when: '{when}'}}\n"
        );
        policy(&yaml, &[&t])
    };
    let cases = [
        ("has(args.q) && args.q == \"forbidden\"", json!({"q": ["forbidden"]})),
        ("has(args.q) && args.q == \"forbidden\"", json!({"q": [["forbidden"]]})),
        ("has(args.q) && args.q == \"forbidden\"", json!({"q": {"x": "forbidden"}})),
        ("args.account == \"1001\"", json!({"account": 1001})),
        ("args.account == 1001", json!({"account": "1001"})),
        ("args.classification in [\"confidential\", \"restricted\"]", json!({"classification": ["confidential"]})),
        ("args.tags == [\"a\"]", json!({"tags": [["a"]]})),
        ("args.q.startsWith(\"forb\")", json!({"q": ["forbidden"]})),
        ("args.q.matches(\"^forb\")", json!({"q": ["forbidden"]})),
    ];
    for (when, args) in cases {
        let d = call(&deny(when), &who, &t, args.clone());
        assert_eq!(d.rule, "p/no", "deny {when} with {args}: {d:?}");
    }
    // Same kinds still compare as CEL does: numbers by value, null only with null.
    for (when, args, applies) in [
        ("args.n == 1001", json!({"n": 1001.0}), true),
        ("args.n == 1001", json!({"n": 1002}), false),
        ("args.q == \"forbidden\"", json!({"q": "fine"}), false),
        ("args.q == null", json!({"q": null}), true),
        ("args.q == null", json!({"q": ["x"]}), false),
        ("args.q != \"forbidden\"", json!({"q": null}), true),
        ("args.c in [\"a\", 1]", json!({"c": "b"}), false),
        ("args.c in [\"a\", 1]", json!({"c": 1.0}), true),
        ("\"k\" in args", json!({"k": 1}), true),
        ("args.m == {\"a\": [1, \"x\"]}", json!({"m": {"a": [1, "x"]}}), true),
        ("args.m == {\"a\": [1, \"x\"]}", json!({"m": {"a": [1, "y"]}}), false),
    ] {
        let d = call(&deny(when), &who, &t, args.clone());
        assert_eq!(d.rule == "p/no", applies, "deny {when} with {args}: {d:?}");
    }
    let allow = |when: &str| {
        let yaml = format!("rules:\n  - {{id: only, effect: allow, tools: [search], when: '{when}'}}\n");
        policy(&yaml, &[&t])
    };
    for (when, args) in [
        ("args.t == principal.tenant", json!({"t": ["acme"]})),
        ("args.region != \"us\"", json!({"region": ["us"]})),
        ("args.region != \"us\"", json!({"region": 7})),
        ("args.c in [\"public\"]", json!({"c": ["public"]})),
    ] {
        let d = call(&allow(when), &who, &t, args.clone());
        assert!(d.outcome.is_err(), "allow {when} with {args}: {d:?}");
    }
}

const APPROVALS: &str = r#"
rules:
  - {id: pay, effect: allow, tools: [transfer_funds], roles: [clerk]}
  - id: large-transfers
    effect: approve
    tools: [transfer_funds]
    when: args.amount > 1000
    approvers: {roles: [finance-manager], subjects: [cfo]}
    expires_in: 30m
    reason: transfers over 1,000 need a manager's approval
  - {id: frozen, effect: deny, tools: [transfer_funds], when: "args.to == 'frozen'", reason: account frozen}
"#;

#[test]
fn an_approve_rule_holds_back_an_otherwise_allowed_call_and_deny_still_overrides() {
    let t = tool("transfer_funds", &[], &[]);
    let p = policy(APPROVALS, &[&t]);
    let clerk = principal("bob", &["clerk"], &[], None);
    assert!(call(&p, &clerk, &t, json!({"amount": 10, "to": "acme"})).outcome.is_ok(), "under the threshold: allowed");
    let held = call(&p, &clerk, &t, json!({"amount": 5000, "to": "acme"}));
    assert_eq!(held.rule, "p/large-transfers");
    let Err(Denial::ApprovalRequired { approval, reason }) = held.outcome else { panic!("{held:?}") };
    assert_eq!((approval.roles.as_slice(), approval.subjects.as_slice()), (&["finance-manager".to_owned()][..], &["cfo".to_owned()][..]));
    assert_eq!((approval.expires_in.as_secs(), reason.as_str()), (1800, "transfers over 1,000 need a manager's approval"));
    // A deny overrides; a caller no allow rule lets in is refused, not asked to wait.
    assert!(matches!(call(&p, &clerk, &t, json!({"amount": 5000, "to": "frozen"})).outcome, Err(Denial::Forbidden { .. })));
    let stranger = principal("eve", &[], &[], None);
    assert!(matches!(call(&p, &stranger, &t, json!({"amount": 5000, "to": "acme"})).outcome, Err(Denial::Forbidden { .. })));
    // At list time the tool is shown: some calls need no approval, the others can be approved.
    assert!(p.visible(&clerk, &t.facts(), &RequestFacts::default()));
    // A condition that cannot be evaluated holds the call back (fail closed).
    assert!(matches!(call(&p, &clerk, &t, json!({"amount": "lots", "to": "acme"})).outcome, Err(Denial::ApprovalRequired { .. })));
}

#[test]
fn who_may_decide_an_approval_and_self_approval() {
    let t = tool("transfer_funds", &[], &[]);
    let p = policy(APPROVALS, &[&t]);
    let Err(Denial::ApprovalRequired { approval, .. }) =
        call(&p, &principal("bob", &["clerk"], &[], None), &t, json!({"amount": 5000, "to": "acme"})).outcome
    else {
        panic!("not held back")
    };
    let requester = ("https://issuer.test", "bob");
    assert_eq!(approval.may_decide(&principal("mary", &["finance-manager"], &[], None), requester), Ok(()));
    assert_eq!(approval.may_decide(&principal("cfo", &[], &[], None), requester), Ok(()));
    assert_eq!(approval.may_decide(&principal("joe", &["clerk"], &[], None), requester), Err("not_an_approver"));
    assert_eq!(approval.may_decide(&principal("bob", &["finance-manager", "clerk"], &[], None), requester), Err("self_approval"));
    let allowed = APPROVALS.replace("expires_in: 30m", "expires_in: 30m\n    self_approval: true");
    let p = policy(&allowed, &[&t]);
    let Err(Denial::ApprovalRequired { approval, .. }) =
        call(&p, &principal("bob", &["clerk"], &[], None), &t, json!({"amount": 5000, "to": "acme"})).outcome
    else {
        panic!("not held back")
    };
    assert_eq!(approval.may_decide(&principal("bob", &["finance-manager"], &[], None), requester), Ok(()));
}

#[test]
fn approve_rules_name_their_approvers_and_only_they_have_them() {
    for (yaml, says) in [
        ("rules:\n  - {id: a, effect: approve, tools: [t]}\n", "approvers"),
        ("rules:\n  - {id: a, effect: approve, tools: [t], approvers: {roles: []}}\n", "approvers"),
        ("rules:\n  - {id: a, effect: allow, tools: [t], approvers: {roles: [x]}}\n", "only approve rules"),
        ("rules:\n  - {id: a, effect: deny, tools: [t], expires_in: 5m}\n", "belong to approve rules"),
        ("rules:\n  - {id: a, effect: approve, tools: [t], approvers: {roles: [x]}, expires_in: 10s}\n", "between 1m and 7d"),
    ] {
        let e = PolicySet::from_sources([("p".to_owned(), yaml)]).expect_err(yaml);
        assert!(e.to_string().contains(says), "{yaml}: {e}");
    }
    // The version names the sources: any change makes another.
    let one = PolicySet::from_sources([("p".to_owned(), APPROVALS)]).unwrap_or_else(|e| panic!("{e}"));
    let same = PolicySet::from_sources([("p".to_owned(), APPROVALS)]).unwrap_or_else(|e| panic!("{e}"));
    let other = PolicySet::from_sources([("p".to_owned(), &*APPROVALS.replace("1000", "2000"))]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.version, same.version);
    assert_ne!(one.version, other.version);
}
