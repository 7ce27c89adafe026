//! OpenAPI documents as tools: the published Swagger Petstore (3.0) and ReadMe API (3.1)
//! documents (tests/fixtures/openapi) become tools, called against a local server with the
//! same argument encoding, credential, identity headers, policy and audit as hand-written
//! HTTP tools.

use serde_json::{Value, json};

use crate::common::{TestIssuer, Upstream, gateway};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/openapi/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn petstore() -> (TestIssuer, Upstream, crate::common::TestGateway) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\n\
         credentials:\n  - {{name: petstore-key, secret: petstore-secret-91b, placement: header, header: api_key}}\n\
         openapi:\n  - name: petstore\n    spec: {spec}\n    base_url: {base}/v2\n    credentials: {{api_key: petstore-key}}\n    exclude: [tag:user, /store/**]\n    scopes: [pets]\n    operations: {{getPetById: {{name: get_pet, scopes: [pets:read]}}}}\n",
        spec = fixture("petstore-3.0.json"),
        base = upstream.url,
    );
    let gw = gateway(&issuer, "  []", &extra).await;
    (issuer, upstream, gw)
}

#[tokio::test]
async fn petstore_operations_are_tools_called_with_the_credential_and_identity() {
    let (issuer, upstream, gw) = petstore().await;
    let alice = issuer.sign(&issuer.claims("alice", "pets pets:read", &gw.mcp));
    let listed = gw.rpc(&alice, "tools/list", json!({})).await;
    let tools = listed.result()["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in [
        "petstore_get_pet",
        "petstore_addPet",
        "petstore_updatePet",
        "petstore_findPetsByStatus",
        "petstore_deletePet",
        "petstore_uploadFile",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("User") || n.contains("Order") || n.contains("Inventory")), "excluded: {names:?}");
    let get_pet = tools.iter().find(|t| t["name"] == "petstore_get_pet").unwrap();
    assert_eq!(get_pet["inputSchema"]["required"], json!(["petId"]));
    assert_eq!(get_pet["inputSchema"]["properties"]["petId"]["type"], "integer");
    assert_eq!(get_pet["outputSchema"]["properties"]["name"]["type"], "string", "the 200 response's Pet schema, $refs resolved");
    assert_eq!(get_pet["title"], "Find pet by ID");
    // deletePet's own `api_key` header parameter is an argument (its security is OAuth, which
    // no credential here serves); getPetById's api_key scheme is the credential's to set.
    let delete = tools.iter().find(|t| t["name"] == "petstore_deletePet").unwrap();
    assert!(delete["inputSchema"]["properties"]["api_key"].is_object());

    // A path parameter, the credential and the caller's identity.
    let r = gw.call(&alice, "petstore_get_pet", json!({"petId": 7})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    let got = upstream.last();
    assert_eq!((got.method.as_str(), got.path.as_str()), ("GET", "/v2/pet/7"));
    assert_eq!(got.headers["api_key"], "petstore-secret-91b");
    assert_eq!(got.headers["x-user-id"], "alice");
    assert!(!got.headers.contains_key("authorization"), "the caller's token never goes upstream");

    // An array query parameter; a JSON object body from the body's properties.
    gw.call(&alice, "petstore_findPetsByStatus", json!({"status": ["available", "sold"]})).await;
    let got = upstream.last();
    assert_eq!((got.path.as_str(), got.query.as_deref()), ("/v2/pet/findByStatus", Some("status=available&status=sold")));
    let r = gw.call(&alice, "petstore_addPet", json!({"name": "doggie", "photoUrls": ["https://x/1.png"], "status": "available"})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    let got = upstream.last();
    assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/v2/pet"));
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body, json!({"name": "doggie", "photoUrls": ["https://x/1.png"], "status": "available"}));

    // The schema is enforced before any call, as an error the model can act on.
    let before = upstream.requests().len();
    for args in [json!({"petId": "../admin"}), json!({}), json!({"name": "doggie"})] {
        let tool = if args.get("name").is_some() { "petstore_addPet" } else { "petstore_get_pet" };
        let r = gw.call(&alice, tool, args.clone()).await;
        assert_eq!(r.result()["isError"], true, "{args}: {:?}", r.body);
    }
    assert_eq!(upstream.requests().len(), before, "nothing reached the backend");

    // Policy: the override's scope, on top of the document's.
    let bob = issuer.sign(&issuer.claims("bob", "pets", &gw.mcp));
    let r = gw.call(&bob, "petstore_get_pet", json!({"petId": 7})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let events = gw.audit();
    let call = events.iter().find(|e| e["tool"] == "petstore_get_pet" && e["decision"] == "allow").unwrap();
    assert_eq!(call["credential"], "petstore-key", "getPetById's api_key scheme, mapped");
    let call = events.iter().find(|e| e["tool"] == "petstore_addPet" && e["decision"] == "allow").unwrap();
    assert!(call.get("credential").is_none(), "addPet's OAuth scheme is mapped to nothing");
    assert!(!gw.audit_text().contains("petstore-secret-91b"));
}

#[tokio::test]
async fn a_31_document_loads_whole_and_its_operations_are_called() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\nopenapi:\n  - {{name: readme, spec: {spec}, base_url: {base}, prefix: rm_}}\n",
        spec = fixture("readme-3.1.json"),
        base = upstream.url,
    );
    let gw = gateway(&issuer, "  []", &extra).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let listed = gw.rpc(&token, "tools/list", json!({})).await;
    let tools = listed.result()["tools"].as_array().unwrap().clone();
    assert!(tools.len() > 40, "every operation of the document: {}", tools.len());
    for tool in &tools {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
    }
    // A path parameter and a body whose properties share a parameter's name: the body is one
    // argument then.
    let update = tools.iter().find(|t| t["name"] == "rm_updateGuide").unwrap();
    assert!(update["inputSchema"]["properties"]["body"].is_object(), "{update}");
    let r = gw.call(&token, "rm_updateGuide", json!({"branch": "stable", "slug": "getting-started", "body": {"title": "Hello"}})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    let got = upstream.last();
    assert_eq!((got.method.as_str(), got.path.as_str()), ("PATCH", "/branches/stable/guides/getting-started"), "{got:?}");
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), json!({"title": "Hello"}));
}

/// A document by URL is fetched once at start-up, through the SSRF guard: an internal address
/// needs `upstream.allow_cidrs`, as any upstream does.
#[tokio::test]
async fn a_document_by_url_is_fetched_through_the_ssrf_guard() {
    let (listener, url) = crate::common::listen().await;
    let document = std::fs::read_to_string(fixture("petstore-3.0.json")).unwrap();
    let app = axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], document) }
        }),
    );
    crate::common::serve(listener, app);
    let yaml = |allow: &str| {
        format!(
            "server: {{listen: 127.0.0.1:0, public_url: http://127.0.0.1:9}}\nidentity:\n  issuers: [{{issuer: https://idp.example.com}}]\n{allow}openapi:\n  - {{name: pets, spec: \"{url}/openapi.json\", base_url: http://127.0.0.1:1/v2, include: [getPetById]}}\ntools: []\n"
        )
    };
    let refused = warden::config::parse(&yaml(""), &std::collections::HashMap::<String, String>::new()).unwrap();
    let error = tokio::task::spawn_blocking(move || warden::Gateway::build(&refused).err().map(|e| e.to_string())).await.unwrap();
    let error = error.expect("an internal address without allow_cidrs is refused");
    assert!(error.contains("openapi[0].spec") && error.contains("SSRF"), "{error}");

    let allowed =
        warden::config::parse(&yaml("upstream: {allow_cidrs: [127.0.0.1/32]}\n"), &std::collections::HashMap::<String, String>::new())
            .unwrap();
    let gw = tokio::task::spawn_blocking(move || warden::Gateway::build(&allowed).map_err(|e| e.to_string())).await.unwrap();
    let gw = gw.unwrap_or_else(|e| panic!("{e}"));
    assert!(gw.tools.load().get("pets_getPetById").is_some());
}
