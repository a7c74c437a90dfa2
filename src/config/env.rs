//! Lists from the environment: `FANOUT__AUTH__PUBLISH_KEYS=k1,k2`. The
//! config crate reads every variable as one string, so the variables of list
//! keys are taken out before it sees them and fed in split at commas.

use super::{Config, ENV_PREFIX};
use crate::error::ConfigError;

/// The dotted keys (`auth.publish_keys`) whose values are lists of strings, read off the
/// defaults so that a list key added later is comma-separated from the environment without
/// anyone having to remember to list it here.
pub(super) fn list_keys() -> Result<Vec<String>, ConfigError> {
    let defaults = serde_json::to_value(Config::default())
        .map_err(|e| ConfigError::Load(format!("cannot list the settings' keys: {e}")))?;
    let mut keys = Vec::new();
    collect_string_lists(&defaults, "", &mut keys);
    Ok(keys)
}

/// Adds to `keys` the dotted path of every array under `value` whose items are all strings.
/// An empty array counts, as every list default is empty (and every list key holds
/// strings); a list key must therefore default to `[]`, not to an absent `Option`. An array
/// of tables does not count: `[[topics]]` cannot be spelled with commas, so rules come only
/// from files (and the defaults hold none, which serialise to nothing at all).
fn collect_string_lists(value: &serde_json::Value, path: &str, keys: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                let field_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                collect_string_lists(field, &field_path, keys);
            }
        }
        serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_string) => {
            keys.push(path.to_owned());
        }
        _ => {}
    }
}

/// Takes the variables of `list_keys` out of `env` (the rest go to the config crate's
/// `Environment`) and splits each at commas: items trimmed, empty ones dropped, so
/// `k1, k2` is `["k1", "k2"]` and an empty value an empty list.
///
/// The crate's own `list_separator` is not enough: it keeps the spaces, makes `""` into
/// `[""]`, and reads a lone `12345` or `true` as a number or a bool, not a one-item list.
pub(super) fn split_lists(
    env: config::Map<String, String>,
    list_keys: &[String],
) -> (config::Map<String, String>, EnvLists) {
    let origin = "the environment".to_owned();
    let mut rest = config::Map::new();
    let mut lists = config::Map::new();
    for (name, value) in env {
        // The key as the crate would spell it: prefix off, lower case, `__` as `.`.
        let key = name
            .strip_prefix(&format!("{ENV_PREFIX}__"))
            .map(|k| k.to_lowercase().replace("__", "."));
        match key {
            Some(key) if list_keys.contains(&key) => {
                let items: Vec<config::Value> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| config::Value::new(Some(&origin), item))
                    .collect();
                lists.insert(key, config::Value::new(Some(&origin), items));
            }
            _ => {
                rest.insert(name, value);
            }
        }
    }
    (rest, EnvLists(lists))
}

/// List keys from the environment, already split (see [`split_lists`]).
#[derive(Debug, Clone)]
pub(super) struct EnvLists(config::Map<String, config::Value>);

impl config::Source for EnvLists {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_keys_are_read_off_the_config_type() {
        let keys = list_keys().unwrap();
        for key in [
            "auth.publish_keys",
            "auth.anonymous_subscribe",
            "server.allowed_origins",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|k| k == "topics"), "{keys:?}");
        let mut found = Vec::new();
        let shape = serde_json::json!({
            "a": {"strings": ["x"], "empty": [], "tables": [{"p": 1}], "numbers": [1], "text": "s,t"},
            "topics": [{"pattern": "x"}],
        });
        collect_string_lists(&shape, "", &mut found);
        found.sort();
        assert_eq!(found, ["a.empty", "a.strings"]);
    }
}
