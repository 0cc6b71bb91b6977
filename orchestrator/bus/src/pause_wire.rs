//! Pauses on the wire: [`Pause`] and [`PauseSet`] as the `cadre.v1.Pause` messages that
//! AdminService and SupervisorPeer.SetPauses carry.

use cadre_proto::v1;
use cadre_supervisors::{Pause, PauseSet};

/// The wire names of the scopes, in the order of [`Pause`]'s variants.
pub const SCOPES: [&str; 4] = ["supervisor", "pool", "task_type_prefix", "tenant"];

/// The wire name of a pause's scope.
pub fn scope_name(p: &Pause) -> &'static str {
    match p {
        Pause::Supervisor { .. } => SCOPES[0],
        Pause::Pool { .. } => SCOPES[1],
        Pause::TaskTypePrefix { .. } => SCOPES[2],
        Pause::Tenant { .. } => SCOPES[3],
    }
}

/// What a pause names within its scope: `intelligence`, `intelligence/writer`, a prefix, a
/// tenant (metric labels, audit targets, logs).
pub fn target_name(p: &Pause) -> String {
    match p {
        Pause::Supervisor { supervisor } => supervisor.clone(),
        Pause::Pool {
            supervisor,
            worker_kind,
        } => format!("{supervisor}/{worker_kind}"),
        Pause::TaskTypePrefix { prefix } => prefix.clone(),
        Pause::Tenant { tenant } => tenant.clone(),
    }
}

/// A pause as a wire message (its scope and names only).
pub fn to_wire(p: &Pause) -> v1::Pause {
    let mut w = v1::Pause {
        scope: scope_name(p).into(),
        ..Default::default()
    };
    match p {
        Pause::Supervisor { supervisor } => w.supervisor = supervisor.clone(),
        Pause::Pool {
            supervisor,
            worker_kind,
        } => {
            w.supervisor = supervisor.clone();
            w.worker_kind = worker_kind.clone();
        }
        Pause::TaskTypePrefix { prefix } => w.prefix = prefix.clone(),
        Pause::Tenant { tenant } => w.tenant = tenant.clone(),
    }
    w
}

/// The pause a wire message names; the error says which field is wrong. Fields the scope does
/// not use are ignored; the names are checked for presence only (the core checks the rest).
pub fn from_wire(w: &v1::Pause) -> Result<Pause, (&'static str, String)> {
    let required = |field: &'static str, value: &str| {
        if value.is_empty() {
            Err((field, format!("is required for scope {:?}", w.scope)))
        } else {
            Ok(value.to_string())
        }
    };
    Ok(match w.scope.as_str() {
        "supervisor" => Pause::Supervisor {
            supervisor: required("supervisor", &w.supervisor)?,
        },
        "pool" => Pause::Pool {
            supervisor: required("supervisor", &w.supervisor)?,
            worker_kind: required("worker_kind", &w.worker_kind)?,
        },
        "task_type_prefix" => Pause::TaskTypePrefix {
            prefix: required("prefix", &w.prefix)?,
        },
        "tenant" => Pause::Tenant {
            tenant: w.tenant.clone(),
        },
        other => {
            return Err(("scope", format!("{other:?} is not one of {}", SCOPES.join(", "))));
        }
    })
}

/// A pause set as wire messages.
pub fn set_to_wire(set: &PauseSet) -> Vec<v1::Pause> {
    set.pauses.iter().map(to_wire).collect()
}

/// A pause set from wire messages; the first bad one is named.
pub fn set_from_wire(pauses: &[v1::Pause]) -> Result<PauseSet, String> {
    let pauses = pauses
        .iter()
        .enumerate()
        .map(|(i, w)| from_wire(w).map_err(|(f, m)| format!("pauses[{i}].{f}: {m}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PauseSet { pauses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_travels_and_bad_ones_are_named() {
        let set = PauseSet {
            pauses: vec![
                Pause::Supervisor {
                    supervisor: "intelligence".into(),
                },
                Pause::Pool {
                    supervisor: "intelligence".into(),
                    worker_kind: "writer".into(),
                },
                Pause::TaskTypePrefix {
                    prefix: "intelligence.text.".into(),
                },
                Pause::Tenant {
                    tenant: "acme".into(),
                },
            ],
        };
        assert_eq!(set_from_wire(&set_to_wire(&set)).unwrap(), set);
        assert_eq!(target_name(&set.pauses[1]), "intelligence/writer");
        let bad = v1::Pause {
            scope: "pool".into(),
            supervisor: "intelligence".into(),
            ..Default::default()
        };
        assert_eq!(from_wire(&bad).unwrap_err().0, "worker_kind");
        let bad = v1::Pause {
            scope: "galaxy".into(),
            ..Default::default()
        };
        assert!(set_from_wire(&[bad]).unwrap_err().starts_with("pauses[0].scope"));
    }
}
