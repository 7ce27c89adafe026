//! Who serves each exposed name: a tool or prompt name, a resource URI, a resource template.
//! A name stays with the server that served it, whatever another server (re)lists later: the
//! newcomer's item is withheld (a tool with `tool_name_collision`), logged and audited once,
//! until an operator acts (a prefix, `include`/`exclude`, or one server removed). Until every
//! server's first connection is over, contested names go by config order, so replicas that
//! start together agree.
//!
//! In: every server's current items. Out: the claims in force, and the collisions not yet
//! reported.

use std::collections::{BTreeMap, HashSet};

/// The kind of an exposed item, which names live in its own space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
    Template,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
            Self::Template => "resource template",
        }
    }
}

pub type Key = (Kind, String);

/// A name two servers offer: who keeps it, who is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collision {
    pub kind: Kind,
    pub name: String,
    pub owner: String,
    pub newcomer: String,
}

#[derive(Debug, Default)]
pub struct Claims {
    owners: BTreeMap<Key, String>,
    reported: HashSet<Collision>,
}

impl Claims {
    /// Settles who serves what, given each server's items in config order (`offers`), and
    /// whether start-up is over (`incumbents`: a served name then stays with its server).
    /// Returns the collisions not reported before.
    pub fn settle(&mut self, offers: &[(String, Vec<Key>)], incumbents: bool) -> Vec<Collision> {
        let by_server: std::collections::HashMap<&str, HashSet<&Key>> =
            offers.iter().map(|(s, keys)| (s.as_str(), keys.iter().collect())).collect();
        let offered = |server: &str, key: &Key| by_server.get(server).is_some_and(|keys| keys.contains(key));
        if incumbents {
            // A claim lapses when its server no longer offers the item (or is gone).
            self.owners.retain(|key, owner| offered(owner, key));
        } else {
            self.owners.clear();
        }
        let mut collisions = Vec::new();
        for (server, keys) in offers {
            for key in keys {
                let owner = self.owners.entry(key.clone()).or_insert_with(|| server.clone());
                if owner != server {
                    collisions.push(Collision { kind: key.0, name: key.1.clone(), owner: owner.clone(), newcomer: server.clone() });
                }
            }
        }
        // Reported once while it lasts; reported again if it ends and comes back.
        self.reported.retain(|c| collisions.contains(c));
        collisions.into_iter().filter(|c| self.reported.insert(c.clone())).collect()
    }

    /// Whether `server` serves `key`.
    pub fn serves(&self, server: &str, kind: Kind, name: &str) -> bool {
        self.owners.get(&(kind, name.to_owned())).is_none_or(|owner| owner == server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(names: &[&str]) -> Vec<Key> {
        names.iter().map(|n| (Kind::Tool, (*n).to_owned())).collect()
    }

    #[test]
    fn a_served_name_stays_with_its_server() {
        let mut claims = Claims::default();
        // b serves b_secret; a (earlier in config) adds it later.
        assert!(claims.settle(&[("a".into(), tools(&["x"])), ("b".into(), tools(&["b_secret"]))], true).is_empty());
        let offers = [("a".into(), tools(&["x", "b_secret"])), ("b".into(), tools(&["b_secret"]))];
        let reported = claims.settle(&offers, true);
        assert_eq!(reported, [Collision { kind: Kind::Tool, name: "b_secret".into(), owner: "b".into(), newcomer: "a".into() }]);
        assert!(claims.serves("b", Kind::Tool, "b_secret") && !claims.serves("a", Kind::Tool, "b_secret"));
        // Reported once, however often the catalog is read again.
        for _ in 0..100 {
            assert!(claims.settle(&offers, true).is_empty());
        }
        // b drops it: a may have it now.
        claims.settle(&[("a".into(), tools(&["x", "b_secret"])), ("b".into(), tools(&[]))], true);
        assert!(claims.serves("a", Kind::Tool, "b_secret"));
    }

    #[test]
    fn at_start_up_config_order_decides() {
        let mut claims = Claims::default();
        claims.settle(&[("a".into(), tools(&[])), ("b".into(), tools(&["n"]))], false);
        assert!(claims.serves("b", Kind::Tool, "n"));
        claims.settle(&[("a".into(), tools(&["n"])), ("b".into(), tools(&["n"]))], false);
        assert!(claims.serves("a", Kind::Tool, "n") && !claims.serves("b", Kind::Tool, "n"));
        // Kinds are separate name spaces.
        assert!(claims.serves("b", Kind::Prompt, "n"));
    }
}
