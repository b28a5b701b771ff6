//! Sigma (Sysmon for Linux) field names → Osprey's ECS fields. docs/sigma-fields.md documents this
//! table; a test keeps the two in step.

use super::fields::Category;

/// Where a Sigma field name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Look the value up at this ECS path.
    Path(String),
    /// `Hashes`: values in Sysmon's `ALGO=hex` form match the SHA-256 at this path; other
    /// algorithms never match (Osprey computes SHA-256 only).
    Hashes(&'static str),
    /// `Initiated`: `true` ⇔ `network.direction` is `egress` (or `outbound`), `false` ⇔ `ingress`
    /// (or `inbound`).
    Initiated,
}

/// A resolved field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub target: Target,
    /// False when the name is neither a Sysmon name Osprey maps nor an ECS-style dotted name: it
    /// is looked up verbatim and the rule gets a warning.
    pub recognised: bool,
}

/// (Sigma name, ECS field, note). `Hashes` and `Initiated` are special (see [`Target`]).
pub const SIGMA_FIELDS: &[(&str, &str, &str)] = &[
    ("Image", "process.executable", ""),
    ("OriginalFileName", "process.name", "no PE metadata on Linux: the name of the executed file"),
    ("CommandLine", "process.command_line", ""),
    ("CurrentDirectory", "process.working_directory", ""),
    ("User", "process.user.name", ""),
    ("LogonId", "user.audit.id", "the audit login uid (loginuid) of the session"),
    ("ProcessId", "process.pid", ""),
    ("ProcessGuid", "process.entity_id", ""),
    ("ParentImage", "process.parent.executable", ""),
    ("ParentCommandLine", "process.parent.command_line", ""),
    ("ParentUser", "process.parent.user.name", ""),
    ("ParentProcessId", "process.parent.pid", ""),
    ("ParentProcessGuid", "process.parent.entity_id", ""),
    ("TargetFilename", "file.path", ""),
    ("SourceFilename", "file.Ext.original.path", "a rename's old path (Elastic Endpoint's name for it)"),
    ("DestinationIp", "destination.ip", ""),
    ("DestinationPort", "destination.port", ""),
    ("DestinationHostname", "destination.domain", ""),
    ("SourceIp", "source.ip", ""),
    ("SourcePort", "source.port", ""),
    ("SourceHostname", "source.domain", ""),
    ("Initiated", "network.direction", "`true` ⇔ egress/outbound, `false` ⇔ ingress/inbound"),
    ("Protocol", "network.transport", "tcp, udp"),
    ("QueryName", "dns.question.name", ""),
    ("QueryResults", "dns.resolved_ip", "a list: a value matches if any resolved address matches"),
    ("QueryStatus", "dns.response_code", ""),
    (
        "Hashes",
        "process.hash.sha256",
        "file.hash.sha256 in file_* and module_load rules; `SHA256=<hex>` values, other algorithms never match",
    ),
    ("sha256", "process.hash.sha256", "file.hash.sha256 in file_* and module_load rules; plain hex"),
    ("Computer", "host.hostname", ""),
    ("ComputerName", "host.hostname", ""),
];

fn hash_path(category: Option<Category>) -> &'static str {
    match category {
        Some(
            Category::FileEvent
            | Category::FileChange
            | Category::FileDelete
            | Category::FileRename
            | Category::FileAccess
            | Category::ModuleLoad,
        ) => "file.hash.sha256",
        _ => "process.hash.sha256",
    }
}

/// Resolves a field name as written in a rule, for a rule of `category`.
pub fn resolve(name: &str, category: Option<Category>) -> Resolved {
    let entry = SIGMA_FIELDS
        .iter()
        .find(|(s, _, _)| *s == name)
        .or_else(|| SIGMA_FIELDS.iter().find(|(s, _, _)| s.eq_ignore_ascii_case(name)));
    if let Some((sigma, ecs, _)) = entry {
        let target = match *sigma {
            "Hashes" => Target::Hashes(hash_path(category)),
            "sha256" => Target::Path(hash_path(category).to_owned()),
            "Initiated" => Target::Initiated,
            _ => Target::Path((*ecs).to_owned()),
        };
        return Resolved { target, recognised: true };
    }
    // ECS names are accepted as themselves.
    let ecs_like = name.contains('.') || name.starts_with('@') || super::fields::Known::from_name(name).is_some();
    Resolved { target: Target::Path(name.to_owned()), recognised: ecs_like }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysmon_names() {
        assert_eq!(resolve("Image", None).target, Target::Path("process.executable".into()));
        assert_eq!(resolve("commandline", None).target, Target::Path("process.command_line".into()));
        assert_eq!(resolve("TargetFilename", None).target, Target::Path("file.path".into()));
        assert_eq!(resolve("Initiated", None).target, Target::Initiated);
        assert_eq!(resolve("Hashes", Some(Category::ProcessCreation)).target, Target::Hashes("process.hash.sha256"));
        assert_eq!(resolve("Hashes", Some(Category::FileDelete)).target, Target::Hashes("file.hash.sha256"));
    }

    #[test]
    fn ecs_names_are_themselves() {
        let r = resolve("process.parent.name", None);
        assert_eq!(r.target, Target::Path("process.parent.name".into()));
        assert!(r.recognised);
        let r = resolve("EventID", None);
        assert!(!r.recognised);
    }

    #[test]
    fn docs_list_every_mapping() {
        let doc = include_str!("../../../docs/sigma-fields.md");
        for (sigma, ecs, _) in SIGMA_FIELDS {
            let row = format!("| `{sigma}` | `{ecs}` |");
            assert!(doc.contains(&row), "docs/sigma-fields.md lacks the row for {sigma}: {row}");
        }
        for c in Category::ALL {
            assert!(doc.contains(&format!("`{}`", c.name())), "docs/sigma-fields.md lacks category {}", c.name());
        }
    }
}
