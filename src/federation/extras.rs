//! Resources, resource templates and prompts of the federated servers: listed with names
//! prefixed, filtered by policy on the exposed name as tools are, read and got through the
//! server's link.

use std::sync::Arc;

use rmcp::model::{ClientRequest, ServerResult};
use serde_json::{Map, Value};

use super::Federation;
use crate::identity::Principal;
use crate::tools::ToolFailure;
use crate::upstream::CallContext;

/// A server's resources, resource templates and prompts, names prefixed.
#[derive(Debug, Default)]
pub(super) struct Extras {
    pub(super) resources: Vec<rmcp::model::Resource>,
    pub(super) templates: Vec<rmcp::model::ResourceTemplate>,
    pub(super) prompts: Vec<rmcp::model::Prompt>,
    /// Whether the server declared the `completions` capability.
    pub(super) completions: bool,
}

/// Why a federated resource read or prompt get was not answered.
#[derive(Debug)]
pub enum SourceError {
    /// No server offers it, or policy does not let this caller see it (the same answer, so a
    /// caller learns nothing of what it may not see).
    NotFound,
    Failed(ToolFailure),
}

/// Resources and prompts of the federated servers, filtered by `allowed` (policy on the
/// exposed name, as for tools).
impl Federation {
    /// Whether Warden offers resources and prompts at all (any server configured).
    pub fn offers_extras(&self) -> bool {
        !self.servers.load().is_empty()
    }

    /// The names policy governs besides tools: every server's resources, templates and prompts.
    pub(super) fn governed(&self) -> Vec<crate::tools::Governed> {
        let mut out = Vec::new();
        for server in self.servers.load().iter() {
            let extras = server.extras.load();
            let names = extras
                .resources
                .iter()
                .map(|r| &r.name)
                .chain(extras.templates.iter().map(|t| &t.name))
                .chain(extras.prompts.iter().map(|p| &p.name));
            out.extend(names.map(|name| crate::tools::Governed {
                name: name.clone(),
                tags: server.tags.clone(),
                metadata: server.metadata.clone(),
                scopes: server.scopes.clone(),
                server: Some(server.name.clone()),
            }));
        }
        out
    }

    pub fn resources(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::Resource> {
        self.visible(|e| &e.resources, |r| &r.name, allowed)
    }

    pub fn resource_templates(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::ResourceTemplate> {
        self.visible(|e| &e.templates, |t| &t.name, allowed)
    }

    pub fn prompts(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::Prompt> {
        self.visible(|e| &e.prompts, |p| &p.name, allowed)
    }

    /// One kind of item of every server, those whose exposed name policy lets the caller see.
    fn visible<T: Clone>(
        &self,
        kind: impl Fn(&Extras) -> &Vec<T>,
        name: impl Fn(&T) -> &String,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for server in self.servers.load().iter() {
            let extras = server.extras.load();
            out.extend(kind(&extras).iter().filter(|item| allowed(&server.facts(name(item)))).cloned());
        }
        out
    }

    /// `resources/read`: the server that listed the URI (or whose template matches it), if
    /// policy lets the caller see that resource. Returns the exposed name with the result.
    pub async fn read_resource(
        &self,
        uri: &str,
        principal: &Principal,
        ctx: &CallContext,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> (Option<String>, Result<rmcp::model::ReadResourceResult, SourceError>) {
        let found = self.servers.load().iter().find_map(|s| {
            let extras = s.extras.load_full();
            let name = extras
                .resources
                .iter()
                .find(|r| r.uri == uri)
                .map(|r| r.name.clone())
                .or_else(|| extras.templates.iter().find(|t| template_matches(&t.uri_template, uri)).map(|t| t.name.clone()))?;
            Some((Arc::clone(s), name))
        });
        let Some((server, name)) = found.filter(|(s, name)| allowed(&s.facts(name))) else { return (None, Err(SourceError::NotFound)) };
        let request =
            ClientRequest::ReadResourceRequest(rmcp::model::ReadResourceRequest::new(rmcp::model::ReadResourceRequestParams::new(uri)));
        let answer = ask(&server, request, principal, ctx, |r| match r {
            ServerResult::ReadResourceResult(result) => Some(result),
            _ => None,
        })
        .await;
        (Some(name), answer)
    }

    /// `prompts/get` of an exposed prompt name, if policy lets the caller see it.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<Map<String, Value>>,
        principal: &Principal,
        ctx: &CallContext,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> Result<rmcp::model::GetPromptResult, SourceError> {
        let server = self
            .servers
            .load()
            .iter()
            .find(|s| s.extras.load().prompts.iter().any(|p| p.name == name) && allowed(&s.facts(name)))
            .cloned()
            .ok_or(SourceError::NotFound)?;
        let upstream_name = name.strip_prefix(server.prefix.as_str()).unwrap_or(name);
        let mut params = rmcp::model::GetPromptRequestParams::new(upstream_name);
        params.arguments = arguments;
        let request = ClientRequest::GetPromptRequest(rmcp::model::GetPromptRequest::new(params));
        ask(&server, request, principal, ctx, |r| match r {
            ServerResult::GetPromptResult(result) => Some(result),
            _ => None,
        })
        .await
    }

    /// `completion/complete` for an argument of an exposed prompt, or of a resource template
    /// (by its URI template, which Warden does not rewrite), if policy lets the caller see that
    /// prompt or template. A server that declared no completions has none to offer: the answer
    /// is then an empty list, as the spec lets a server answer any argument.
    pub async fn complete(
        &self,
        mut params: rmcp::model::CompleteRequestParams,
        principal: &Principal,
        ctx: &CallContext,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> Result<rmcp::model::CompleteResult, SourceError> {
        use rmcp::model::Reference;
        let servers = self.servers.load();
        let owner = |s: &&Arc<super::Server>| {
            let extras = s.extras.load();
            let name = match &params.r#ref {
                Reference::Prompt(p) => extras.prompts.iter().find(|x| x.name == p.name).map(|x| x.name.clone()),
                Reference::Resource(r) => extras
                    .templates
                    .iter()
                    .find(|t| t.uri_template == r.uri)
                    .map(|t| t.name.clone())
                    .or_else(|| extras.resources.iter().find(|x| x.uri == r.uri).map(|x| x.name.clone())),
                _ => None,
            };
            name.is_some_and(|name| allowed(&s.facts(&name)))
        };
        let server = servers.iter().find(owner).cloned().ok_or(SourceError::NotFound)?;
        if !server.extras.load().completions {
            return Ok(rmcp::model::CompleteResult::new(rmcp::model::CompletionInfo::default()));
        }
        if let Reference::Prompt(p) = &mut params.r#ref
            && let Some(upstream_name) = p.name.strip_prefix(server.prefix.as_str())
        {
            p.name = upstream_name.to_owned();
        }
        // Warden's own request metadata (a progress token, say) is not the server's business.
        params.meta = None;
        let request = ClientRequest::CompleteRequest(rmcp::model::CompleteRequest::new(params));
        ask(&server, request, principal, ctx, |r| match r {
            ServerResult::CompleteResult(result) => Some(result),
            _ => None,
        })
        .await
    }
}

/// One request to a server, answered with the result of the kind `pick` takes.
async fn ask<T>(
    server: &super::Server,
    request: ClientRequest,
    principal: &Principal,
    ctx: &CallContext,
    pick: impl FnOnce(ServerResult) -> Option<T>,
) -> Result<T, SourceError> {
    let result = server.link.request(request, principal, ctx).await.map_err(SourceError::Failed)?;
    pick(result).ok_or_else(|| SourceError::Failed(ToolFailure::Rpc { code: -32603, message: "unexpected result type".into() }))
}

/// Whether `uri` matches an RFC 6570 template's literal parts, each `{…}` expression standing
/// for any text.
fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::with_capacity(template.len());
    let mut in_expression = false;
    for c in template.chars() {
        match (c, in_expression) {
            ('{', false) => {
                in_expression = true;
                pattern.push('*');
            }
            ('}', true) => in_expression = false,
            (_, true) => {}
            ('*' | '?', false) => return false,
            (c, false) => pattern.push(c),
        }
    }
    !in_expression && crate::policy::glob(pattern.as_bytes(), uri.as_bytes())
}
