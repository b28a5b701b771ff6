//! IoC list files (`*.ioc.yaml`): SHA-256 hashes, IP addresses and CIDR blocks, domains (with
//! their subdomains) and paths (exact or glob). The format is in docs/ioc-format.md.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::compile::FieldTable;
use super::fields::{Category, FieldId, Scalar};
use super::net::{parse_ip, Cidr};
use super::sigma::{meta, Level, RuleMeta};
use super::yaml::{Located, Node, Pos};

/// Which event fields each kind of indicator is checked against, by event category.
const HASH_FIELDS: &[&str] = &["process.hash.sha256", "file.hash.sha256"];
const IP_FIELDS: &[&str] = &["destination.ip", "source.ip", "dns.resolved_ip"];
const DOMAIN_FIELDS: &[&str] = &["dns.question.name", "destination.domain"];
const PATH_FIELDS: &[&str] = &["process.executable", "file.path", "file.Ext.original.path"];

fn fields_for(c: Option<Category>) -> &'static [&'static str] {
    match c {
        Some(Category::ProcessCreation) => &["process.executable", "process.hash.sha256"],
        Some(
            Category::FileEvent
            | Category::FileChange
            | Category::FileDelete
            | Category::FileAccess
            | Category::ModuleLoad,
        ) => &["file.path", "file.hash.sha256"],
        Some(Category::FileRename) => &["file.path", "file.Ext.original.path", "file.hash.sha256"],
        Some(Category::NetworkConnection) => &["destination.ip", "source.ip", "destination.domain"],
        Some(Category::DnsQuery) => &["dns.question.name", "dns.resolved_ip"],
        _ => &[],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hash,
    Ip,
    Domain,
    Path,
}

fn kind_of(field: &str) -> Option<Kind> {
    if HASH_FIELDS.contains(&field) {
        Some(Kind::Hash)
    } else if IP_FIELDS.contains(&field) {
        Some(Kind::Ip)
    } else if DOMAIN_FIELDS.contains(&field) {
        Some(Kind::Domain)
    } else if PATH_FIELDS.contains(&field) {
        Some(Kind::Path)
    } else {
        None
    }
}

/// One IoC file.
#[derive(Debug)]
pub struct IocList {
    pub meta: Arc<RuleMeta>,
    sha256: HashSet<String>,
    ips: HashSet<u128>,
    /// Prefix length → masked networks.
    cidrs: HashMap<u8, HashSet<u128>>,
    /// Domains matched with their subdomains.
    domains: HashSet<String>,
    /// `*.example.com`: subdomains only.
    subdomains_only: HashSet<String>,
    paths: HashSet<String>,
    globs: Option<regex::RegexSet>,
    glob_texts: Vec<String>,
}

fn entries<'a>(doc: &'a Node, key: &str) -> Result<Vec<(String, &'a Node)>, Located> {
    let Some(n) = doc.get(key) else { return Ok(Vec::new()) };
    if n.is_null() {
        return Ok(Vec::new());
    }
    let items = n.as_seq().ok_or_else(|| Located::new(n.pos, format!("`{key}` must be a list")))?;
    items
        .iter()
        .map(|it| {
            it.scalar_text()
                .map(|s| (s.trim().to_owned(), it))
                .ok_or_else(|| Located::new(it.pos, format!("`{key}` entries must be strings")))
        })
        .collect()
}

/// `**` any characters; `*` and `?` any run of / one character other than `/`.
fn glob_regex(g: &str) -> String {
    let mut out = String::from("^");
    let mut chars = g.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn normal_domain(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Parses an IoC document.
pub fn parse(doc: &Node, path: &Path, warnings: &mut Vec<(Pos, String)>) -> Result<IocList, Located> {
    if doc.as_map().is_none() {
        return Err(Located::new(doc.pos, "an IoC list must be a map"));
    }
    for (k, _) in doc.as_map().unwrap_or(&[]) {
        let known = [
            "title",
            "id",
            "name",
            "description",
            "author",
            "date",
            "modified",
            "references",
            "tags",
            "level",
            "status",
            "response",
            "falsepositives",
            "sha256",
            "ips",
            "domains",
            "paths",
        ];
        if let Some(key) = k.as_str() {
            if !known.contains(&key) {
                warnings.push((k.pos, format!("unknown key `{key}` in an IoC list")));
            }
        }
    }
    let mut m = meta(doc, path, warnings)?;
    if m.level.is_none() {
        m.level = Some(Level::High);
    }
    let mut list = IocList {
        meta: Arc::new(m),
        sha256: HashSet::new(),
        ips: HashSet::new(),
        cidrs: HashMap::new(),
        domains: HashSet::new(),
        subdomains_only: HashSet::new(),
        paths: HashSet::new(),
        globs: None,
        glob_texts: Vec::new(),
    };
    for (s, n) in entries(doc, "sha256")? {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Located::new(n.pos, format!("`{s}` is not a SHA-256 (64 hex digits)")));
        }
        list.sha256.insert(s.to_ascii_lowercase());
    }
    for (s, n) in entries(doc, "ips")? {
        let c =
            Cidr::parse(&s).ok_or_else(|| Located::new(n.pos, format!("`{s}` is not an IP address or CIDR block")))?;
        if c.prefix_len() == 128 {
            list.ips.insert(c.bits());
        } else {
            list.cidrs.entry(c.prefix_len()).or_default().insert(c.bits());
        }
    }
    for (s, n) in entries(doc, "domains")? {
        let d = normal_domain(&s);
        let (set, bare) = match d.strip_prefix("*.") {
            Some(rest) => (&mut list.subdomains_only, rest.to_owned()),
            None => (&mut list.domains, d),
        };
        if !valid_domain(&bare) {
            return Err(Located::new(n.pos, format!("`{s}` is not a domain name")));
        }
        set.insert(bare);
    }
    let mut globs = Vec::new();
    for (s, n) in entries(doc, "paths")? {
        if !s.starts_with('/') {
            return Err(Located::new(n.pos, format!("`{s}` is not an absolute path")));
        }
        if s.contains(['*', '?']) {
            globs.push(glob_regex(&s));
            list.glob_texts.push(s);
        } else {
            list.paths.insert(s);
        }
    }
    if !globs.is_empty() {
        let set = regex::RegexSetBuilder::new(&globs)
            .size_limit(16 << 20)
            .build()
            .map_err(|e| Located::new(doc.pos, format!("path globs too complex: {e}")))?;
        list.globs = Some(set);
    }
    if list.is_empty() {
        warnings.push((doc.pos, "the IoC list has no indicators (sha256, ips, domains, paths)".into()));
    }
    Ok(list)
}

impl IocList {
    fn is_empty(&self) -> bool {
        self.sha256.is_empty()
            && self.ips.is_empty()
            && self.cidrs.is_empty()
            && self.domains.is_empty()
            && self.subdomains_only.is_empty()
            && self.paths.is_empty()
            && self.glob_texts.is_empty()
    }

    fn has(&self, k: Kind) -> bool {
        match k {
            Kind::Hash => !self.sha256.is_empty(),
            Kind::Ip => !self.ips.is_empty() || !self.cidrs.is_empty(),
            Kind::Domain => !self.domains.is_empty() || !self.subdomains_only.is_empty(),
            Kind::Path => !self.paths.is_empty() || self.globs.is_some(),
        }
    }

    /// The indicator that `value` matches, if any.
    fn lookup(&self, k: Kind, value: &str) -> Option<String> {
        match k {
            Kind::Hash => {
                let v = value.trim().to_ascii_lowercase();
                self.sha256.contains(&v).then_some(v)
            }
            Kind::Ip => {
                let ip = parse_ip(value)?;
                let full = Cidr::key_of(ip, 128);
                if self.ips.contains(&full) {
                    return Some(ip.to_string());
                }
                self.cidrs.iter().find(|(len, nets)| nets.contains(&Cidr::key_of(ip, **len))).map(|(len, _)| {
                    format!("{ip} in a /{} block", if ip.is_ipv4() { len.saturating_sub(96) } else { *len })
                })
            }
            Kind::Domain => {
                let d = normal_domain(value);
                if self.domains.contains(&d) {
                    return Some(d);
                }
                // Each parent domain: `a.b.evil.com` → `b.evil.com`, `evil.com`, `com`.
                let mut rest = d.as_str();
                while let Some((_, parent)) = rest.split_once('.') {
                    if self.domains.contains(parent) || self.subdomains_only.contains(parent) {
                        return Some(parent.to_owned());
                    }
                    rest = parent;
                }
                None
            }
            Kind::Path => {
                if self.paths.contains(value) {
                    return Some(value.to_owned());
                }
                let set = self.globs.as_ref()?;
                let i = set.matches(value).into_iter().next()?;
                self.glob_texts.get(i).cloned()
            }
        }
    }
}

/// All IoC lists of a rule set, with the fields they are checked against.
#[derive(Debug, Default)]
pub struct IocSet {
    pub lists: Vec<IocList>,
    /// Per category index (and one more for events without a category): fields to check.
    fields: Vec<Vec<(FieldId, &'static str, Kind)>>,
}

/// One IoC hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IocHit {
    pub list: usize,
    pub field: &'static str,
    pub value: String,
    pub indicator: String,
}

impl IocSet {
    pub fn new(lists: Vec<IocList>, table: &mut FieldTable) -> Self {
        let mut fields = Vec::new();
        let cats: Vec<Option<Category>> = Category::ALL.iter().copied().map(Some).chain([None]).collect();
        for c in cats {
            let mut v = Vec::new();
            for &f in fields_for(c) {
                if let Some(k) = kind_of(f) {
                    if lists.iter().any(|l| l.has(k)) {
                        v.push((table.intern(f), f, k));
                    }
                }
            }
            fields.push(v);
        }
        Self { lists, fields }
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Checks an event's indicator fields against every list.
    pub(crate) fn check(&self, ctx: &crate::detect::eval::Ctx<'_>, out: &mut Vec<IocHit>) {
        if self.lists.is_empty() {
            return;
        }
        let idx = ctx.ev.category().map_or(Category::COUNT, Category::index);
        let Some(fields) = self.fields.get(idx) else { return };
        for &(id, name, kind) in fields {
            let v = ctx.raw(id);
            v.for_each(|s| {
                let Scalar::Str(text) = s else { return };
                for (i, l) in self.lists.iter().enumerate() {
                    if !l.has(kind) {
                        continue;
                    }
                    if let Some(indicator) = l.lookup(kind, text) {
                        out.push(IocHit { list: i, field: name, value: text.to_string(), indicator });
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::yaml;

    fn list(src: &str) -> IocList {
        let docs = yaml::parse(src).unwrap();
        parse(&docs[0], Path::new("t.ioc.yaml"), &mut Vec::new()).unwrap()
    }

    const SRC: &str = "title: test feed\nsha256:\n  - E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\nips:\n  - 203.0.113.7\n  - 198.51.100.0/24\n  - 2001:db8::/32\ndomains:\n  - evil.example\n  - '*.cdn.example'\npaths:\n  - /tmp/.x/miner\n  - /dev/shm/*\n  - /var/tmp/**/kworker?\n";

    #[test]
    fn hashes() {
        let l = list(SRC);
        assert!(l.lookup(Kind::Hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").is_some());
        assert!(l.lookup(Kind::Hash, "00").is_none());
        assert_eq!(l.meta.level, Some(Level::High));
    }

    #[test]
    fn ips_and_cidrs() {
        let l = list(SRC);
        assert!(l.lookup(Kind::Ip, "203.0.113.7").is_some());
        assert!(l.lookup(Kind::Ip, "203.0.113.8").is_none());
        assert_eq!(l.lookup(Kind::Ip, "198.51.100.42").as_deref(), Some("198.51.100.42 in a /24 block"));
        assert!(l.lookup(Kind::Ip, "::ffff:198.51.100.42").is_some());
        assert!(l.lookup(Kind::Ip, "2001:db8:ffff::1").is_some());
        assert!(l.lookup(Kind::Ip, "2001:db9::1").is_none());
        assert!(l.lookup(Kind::Ip, "garbage").is_none());
    }

    #[test]
    fn domains_with_subdomains() {
        let l = list(SRC);
        assert_eq!(l.lookup(Kind::Domain, "evil.example").as_deref(), Some("evil.example"));
        assert_eq!(l.lookup(Kind::Domain, "a.b.EVIL.example.").as_deref(), Some("evil.example"));
        assert!(l.lookup(Kind::Domain, "notevil.example").is_none());
        assert!(l.lookup(Kind::Domain, "cdn.example").is_none());
        assert!(l.lookup(Kind::Domain, "x.cdn.example").is_some());
    }

    #[test]
    fn paths_exact_and_glob() {
        let l = list(SRC);
        assert!(l.lookup(Kind::Path, "/tmp/.x/miner").is_some());
        assert!(l.lookup(Kind::Path, "/tmp/.x/miner2").is_none());
        assert_eq!(l.lookup(Kind::Path, "/dev/shm/payload").as_deref(), Some("/dev/shm/*"));
        assert!(l.lookup(Kind::Path, "/dev/shm/a/b").is_none());
        assert!(l.lookup(Kind::Path, "/var/tmp/a/b/kworker0").is_some());
        assert!(l.lookup(Kind::Path, "/var/tmp/a/b/kworker00").is_none());
    }

    #[test]
    fn bad_entries_are_located() {
        let docs = yaml::parse("title: t\nsha256:\n  - abc\n").unwrap();
        let e = parse(&docs[0], Path::new("x"), &mut Vec::new()).unwrap_err();
        assert_eq!(e.pos, Pos::new(3, 5));
        let docs = yaml::parse("title: t\nips:\n  - 10.0.0.0/40\n").unwrap();
        assert_eq!(parse(&docs[0], Path::new("x"), &mut Vec::new()).unwrap_err().pos.line, 3);
        let docs = yaml::parse("title: t\ndomains: ['bad domain']\n").unwrap();
        assert!(parse(&docs[0], Path::new("x"), &mut Vec::new()).is_err());
        let docs = yaml::parse("title: t\npaths: ['relative/x']\n").unwrap();
        assert!(parse(&docs[0], Path::new("x"), &mut Vec::new()).is_err());
    }
}
