//! A question to the recorder, answered the same way by the running agent (through its control
//! socket: `query {json}`) and by the CLI reading the store itself when the agent is down.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    hunt::Hunt,
    story::{Story, Subject},
    store::Store,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Query {
    Hunt(Box<Hunt>),
    Story(Subject),
}

impl Query {
    /// Runs the query on the store at `path` (read-only); errors are returned as text.
    pub fn answer(&self, path: &Path) -> Result<Value, String> {
        let store = Store::open_read(path).map_err(|e| e.to_string())?;
        match self {
            Query::Hunt(h) => h.run(&store).map_err(|e| e.to_string()).and_then(|a| to_value(&a)),
            Query::Story(s) => Story::build(&store, s).map_err(|e| e.to_string()).and_then(|st| to_value(&st)),
        }
    }
}

fn to_value(v: &impl Serialize) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}
