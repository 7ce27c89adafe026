//! Resources, resource templates and prompts of the federated servers: listed with names
//! prefixed, filtered by policy on the exposed name as tools are, read and got through the
//! server's link.

use std::sync::Arc;

use rmcp::model::{ClientRequest, ResultType, ServerResult};
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

impl Extras {
    /// Those `server` serves: none that another server's claim holds.
    pub(super) fn served_by(&self, claims: &super::claims::Claims, server: &str) -> Self {
        use super::claims::Kind;
        Self {
            resources: self.resources.iter().filter(|r| claims.serves(server, Kind::Resource, &r.uri)).cloned().collect(),
            templates: self.templates.iter().filter(|t| claims.serves(server, Kind::Template, &t.uri_template)).cloned().collect(),
            prompts: self.prompts.iter().filter(|p| claims.serves(server, Kind::Prompt, &p.name)).cloned().collect(),
            completions: self.completions,
        }
    }
}

/// A federated resource, resource template or prompt that a caller may see, and the server
/// that offers it: found by [`Federation::locate_resource`] and the like, then asked. Between
/// the two, the caller's limits are checked against its facts.
pub struct Source {
    pub(super) server: Arc<super::Server>,
    /// The exposed name (with the server's prefix).
    pub name: String,
}

impl Source {
    /// What policy and limits see of it: its exposed name and the server's scopes, tags and
    /// metadata.
    pub fn facts(&self) -> crate::policy::ToolFacts<'_> {
        self.server.facts(&self.name)
    }

    /// The server's name (`servers[].name`).
    pub fn server(&self) -> &str {
        &self.server.name
    }

    /// `resources/read` of `uri`; the server may ask the client for input first (2026-07-28).
    pub async fn read_resource(
        &self,
        uri: &str,
        principal: &Principal,
        ctx: &CallContext,
    ) -> Result<Answer<rmcp::model::ReadResourceResult>, ToolFailure> {
        let mut params = rmcp::model::ReadResourceRequestParams::new(uri);
        (params.input_responses, params.request_state) = ctx.input_params();
        let request = ClientRequest::ReadResourceRequest(rmcp::model::ReadResourceRequest::new(params));
        self.ask_for_input(request, principal, ctx, |r| match r {
            ServerResult::ReadResourceResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Some(result)
            }
            _ => None,
        })
        .await
    }

    /// `prompts/get` of this prompt, by the server's own name for it; the server may ask the
    /// client for input first (2026-07-28).
    pub async fn get_prompt(
        &self,
        arguments: Option<Map<String, Value>>,
        principal: &Principal,
        ctx: &CallContext,
    ) -> Result<Answer<rmcp::model::GetPromptResult>, ToolFailure> {
        let mut params = rmcp::model::GetPromptRequestParams::new(self.upstream_name());
        params.arguments = arguments;
        (params.input_responses, params.request_state) = ctx.input_params();
        let request = ClientRequest::GetPromptRequest(rmcp::model::GetPromptRequest::new(params));
        self.ask_for_input(request, principal, ctx, |r| match r {
            ServerResult::GetPromptResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Some(result)
            }
            _ => None,
        })
        .await
    }

    /// `completion/complete` for an argument of this prompt (by the server's own name for it)
    /// or resource template (by its URI template, which Warden does not rewrite). A server that
    /// declared no completions has none to offer: the answer is then an empty list, as the
    /// spec lets a server answer any argument.
    pub async fn complete(
        &self,
        mut params: rmcp::model::CompleteRequestParams,
        principal: &Principal,
        ctx: &CallContext,
    ) -> Result<rmcp::model::CompleteResult, ToolFailure> {
        if !self.server.extras.load().completions {
            return Ok(rmcp::model::CompleteResult::new(rmcp::model::CompletionInfo::default()));
        }
        if let rmcp::model::Reference::Prompt(p) = &mut params.r#ref {
            p.name = self.upstream_name().to_owned();
        }
        // Warden's own request metadata (a progress token, say) is not the server's business.
        params.meta = None;
        let request = ClientRequest::CompleteRequest(rmcp::model::CompleteRequest::new(params));
        self.ask(request, principal, ctx, |r| match r {
            ServerResult::CompleteResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Some(result)
            }
            _ => None,
        })
        .await
    }

    /// As [`Self::ask`], for the requests a server may answer with an `InputRequiredResult`:
    /// the caller's capabilities offered, what the server asks checked against
    /// `servers[].client_requests`.
    async fn ask_for_input<T>(
        &self,
        mut request: ClientRequest,
        principal: &Principal,
        ctx: &CallContext,
        pick: impl FnOnce(ServerResult) -> Option<T>,
    ) -> Result<Answer<T>, ToolFailure> {
        let link = &self.server.link;
        link.offer_capabilities(&mut request, ctx);
        match link.request(request, principal, ctx).await? {
            ServerResult::InputRequiredResult(input) => {
                link.check_input_requests(&input)?;
                Ok(Answer::Input(input))
            }
            result => pick(result).map(Answer::Complete).ok_or_else(|| ToolFailure::Rpc {
                code: -32603,
                message: "unexpected result type".into(),
                data: None,
            }),
        }
    }

    fn upstream_name(&self) -> &str {
        self.name.strip_prefix(self.server.prefix.as_str()).unwrap_or(&self.name)
    }

    /// One request to the server, answered with the result of the kind `pick` takes (which
    /// marks it `resultType: complete`: a server of an older revision leaves it out, and
    /// 2026-07-28 requires it; the older paths strip it again).
    async fn ask<T>(
        &self,
        request: ClientRequest,
        principal: &Principal,
        ctx: &CallContext,
        pick: impl FnOnce(ServerResult) -> Option<T>,
    ) -> Result<T, ToolFailure> {
        let result = self.server.link.request(request, principal, ctx).await?;
        pick(result).ok_or_else(|| ToolFailure::Rpc { code: -32603, message: "unexpected result type".into(), data: None })
    }
}

/// A federated request's answer: its result, or the server's input requests (2026-07-28), which
/// the MCP stage relays to the caller.
#[derive(Debug)]
pub enum Answer<T> {
    Complete(T),
    Input(rmcp::model::InputRequiredResult),
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
            let extras = server.served.load();
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
            let extras = server.served.load();
            out.extend(kind(&extras).iter().filter(|item| allowed(&server.facts(name(item)))).cloned());
        }
        out
    }

    /// For `resources/read`: the server that listed the URI, else the server whose template
    /// matches it most specifically, if policy lets the caller see that resource. An exact
    /// listing beats every template, and a URI one server lists is never sent to another
    /// (names are claimed, see `claims`). A caller learns nothing of what it may not see: that
    /// is `None` too.
    pub fn locate_resource(&self, uri: &str, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Option<Source> {
        let listed = self.locate(|extras| extras.resources.iter().find(|r| r.uri == uri).map(|r| r.name.clone()), |_| true);
        let found = listed.or_else(|| {
            let servers = self.servers.load();
            servers
                .iter()
                .flat_map(|s| {
                    let served = s.served.load_full();
                    let matching: Vec<(Specificity, String)> = served
                        .templates
                        .iter()
                        .filter(|t| template_matches(&t.uri_template, uri))
                        .map(|t| (specificity(&t.uri_template), t.name.clone()))
                        .collect();
                    matching.into_iter().map(move |(rank, name)| (rank, Arc::clone(s), name))
                })
                // The most specific; among equals, the first in config order.
                .fold(None::<(Specificity, Arc<super::Server>, String)>, |best, next| match &best {
                    Some(b) if b.0 >= next.0 => best,
                    _ => Some(next),
                })
                .map(|(_, server, name)| Source { server, name })
        })?;
        allowed(&found.facts()).then_some(found)
    }

    /// For `prompts/get`: the server that offers the exposed prompt name, if policy lets the
    /// caller see it.
    pub fn locate_prompt(&self, name: &str, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Option<Source> {
        self.locate(|extras| extras.prompts.iter().find(|p| p.name == name).map(|p| p.name.clone()), allowed)
    }

    /// For `completion/complete`: the server that offers the prompt (by its exposed name) or
    /// the resource template (by its URI template, or a resource by its URI), if policy lets the
    /// caller see it.
    pub fn locate_reference(
        &self,
        reference: &rmcp::model::Reference,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> Option<Source> {
        use rmcp::model::Reference;
        self.locate(
            |extras| match reference {
                Reference::Prompt(p) => extras.prompts.iter().find(|x| x.name == p.name).map(|x| x.name.clone()),
                Reference::Resource(r) => {
                    let template = extras.templates.iter().find(|t| t.uri_template == r.uri).map(|t| t.name.clone());
                    template.or_else(|| extras.resources.iter().find(|x| x.uri == r.uri).map(|x| x.name.clone()))
                }
                // A kind of reference a later revision adds: no server is asked about it.
                _ => None,
            },
            allowed,
        )
    }

    /// The server that serves the item `find` names (one at most: names are claimed), if
    /// policy lets the caller see it.
    fn locate(&self, find: impl Fn(&Extras) -> Option<String>, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Option<Source> {
        let found = self.servers.load().iter().find_map(|s| find(&s.served.load()).map(|name| (Arc::clone(s), name)));
        found.filter(|(s, name)| allowed(&s.facts(name))).map(|(server, name)| Source { server, name })
    }
}

/// How specific a template is: more literal text first, then fewer expressions.
type Specificity = (usize, std::cmp::Reverse<usize>);

fn specificity(template: &str) -> Specificity {
    let mut literal = 0;
    let mut expressions = 0;
    let mut inside = false;
    for c in template.chars() {
        match (c, inside) {
            ('{', false) => {
                inside = true;
                expressions += 1;
            }
            ('}', true) => inside = false,
            (_, false) => literal += 1,
            (_, true) => {}
        }
    }
    (literal, std::cmp::Reverse(expressions))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_template_ranks_first() {
        let mut ranked = ["{+anything}", "b://secret/{doc}", "b://{kind}/{doc}", "b://secret/doc{?v}"];
        ranked.sort_by_key(|t| std::cmp::Reverse(specificity(t)));
        assert_eq!(ranked, ["b://secret/doc{?v}", "b://secret/{doc}", "b://{kind}/{doc}", "{+anything}"]);
        assert!(template_matches("{+anything}", "b://secret/doc") && template_matches("b://secret/{doc}", "b://secret/doc"));
    }
}
