//! Who may do what. Roles are ordered: each includes the ones before it,
//! except `Agent`, which may only report health for its own PoP.

use serde::{Deserialize, Serialize};

use crate::PopId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read: status, intents, explain, watch, audit.
    Viewer,
    /// Viewer plus drains and overrides.
    Operator,
    /// Operator plus config reload and failure confirmation.
    Admin,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub principal: String,
    /// `None` for agent identities, which may not use the operator API.
    pub role: Option<Role>,
    /// The PoP an agent identity may report for.
    pub pop: Option<PopId>,
}

/// Who is calling, as the transport layer saw it. Put into request
/// extensions by the API's interceptor and checked by each service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Auth is off; the caller's address is all we know.
    Open {
        addr: String,
    },
    Known(Identity),
    /// Auth is on and the caller has no valid credential.
    Unknown {
        why: &'static str,
    },
}

impl Caller {
    /// The name that goes into audit entries.
    pub fn principal(&self) -> String {
        match self {
            Self::Open { addr } => format!("anonymous@{addr}"),
            Self::Known(id) => id.principal.clone(),
            Self::Unknown { .. } => "unauthenticated".to_owned(),
        }
    }
}
