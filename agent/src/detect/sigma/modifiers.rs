//! Value modifiers (`Field|contains|all: ...`): parsing and validation of a modifier chain.

use crate::detect::pattern::Utf16;
use crate::detect::yaml::{Located, Pos};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Re,
    ReI,
    ReM,
    ReS,
    Base64,
    Base64Offset,
    Utf16(Utf16),
    Windash,
    Cidr,
    Exists,
    Cmp(CmpOp),
    Neq,
    FieldRef,
    Cased,
    Expand,
    Time(TimeUnit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Modifier {
    pub fn from_name(s: &str) -> Option<Modifier> {
        Some(match s {
            "contains" => Modifier::Contains,
            "startswith" => Modifier::StartsWith,
            "endswith" => Modifier::EndsWith,
            "all" => Modifier::All,
            "re" => Modifier::Re,
            "i" => Modifier::ReI,
            "m" => Modifier::ReM,
            "s" => Modifier::ReS,
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "utf16le" | "wide" => Modifier::Utf16(Utf16::Le),
            "utf16be" => Modifier::Utf16(Utf16::Be),
            "utf16" => Modifier::Utf16(Utf16::Bom),
            "windash" => Modifier::Windash,
            "cidr" => Modifier::Cidr,
            "exists" => Modifier::Exists,
            "gt" => Modifier::Cmp(CmpOp::Gt),
            "gte" => Modifier::Cmp(CmpOp::Gte),
            "lt" => Modifier::Cmp(CmpOp::Lt),
            "lte" => Modifier::Cmp(CmpOp::Lte),
            "neq" => Modifier::Neq,
            "fieldref" => Modifier::FieldRef,
            "cased" => Modifier::Cased,
            "expand" => Modifier::Expand,
            "minute" => Modifier::Time(TimeUnit::Minute),
            "hour" => Modifier::Time(TimeUnit::Hour),
            "day" => Modifier::Time(TimeUnit::Day),
            "week" => Modifier::Time(TimeUnit::Week),
            "month" => Modifier::Time(TimeUnit::Month),
            "year" => Modifier::Time(TimeUnit::Year),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchKind {
    #[default]
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// A value transformation, applied in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Base64,
    Base64Offset,
    Utf16(Utf16),
    Windash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReFlags {
    pub case_insensitive: bool,
    pub multi_line: bool,
    pub dot_all: bool,
}

/// A validated modifier chain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModSpec {
    pub kind: MatchKind,
    pub transforms: Vec<Transform>,
    pub re: Option<ReFlags>,
    pub cidr: bool,
    pub exists: bool,
    pub cmp: Option<CmpOp>,
    pub neq: bool,
    pub fieldref: bool,
    pub cased: bool,
    pub all: bool,
    pub expand: bool,
    pub time: Option<TimeUnit>,
}

/// Splits `Field|mod1|mod2` (at `pos`, the key's position) into the field name (`None` for a
/// keyword map key such as `|all`) and a validated modifier chain. Errors point at the offending
/// modifier's column.
pub fn parse_key(key: &str, pos: Pos) -> Result<(Option<String>, ModSpec), Located> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or("");
    let mut offset = field.chars().count() + 1;
    let mut mods = Vec::new();
    for name in parts {
        let at = pos.shifted(offset);
        let m = Modifier::from_name(name).ok_or_else(|| {
            if name.is_empty() {
                Located::new(at, "empty modifier (`||`)")
            } else {
                Located::new(at, format!("unknown modifier `{name}`"))
            }
        })?;
        mods.push((m, at));
        offset += name.chars().count() + 1;
    }
    let field = if field.is_empty() { None } else { Some(field.to_owned()) };
    if field.is_none() && mods.is_empty() {
        return Err(Located::new(pos, "empty field name"));
    }
    Ok((field, validate(&mods, pos)?))
}

fn validate(mods: &[(Modifier, Pos)], key_pos: Pos) -> Result<ModSpec, Located> {
    let mut s = ModSpec::default();
    let mut prev: Option<Modifier> = None;
    for &(m, at) in mods {
        let dup = |what: &str| Located::new(at, format!("`{what}` given twice"));
        match m {
            Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith => {
                if s.kind != MatchKind::Equals {
                    return Err(Located::new(at, "only one of contains, startswith, endswith may be used"));
                }
                s.kind = match m {
                    Modifier::Contains => MatchKind::Contains,
                    Modifier::StartsWith => MatchKind::StartsWith,
                    _ => MatchKind::EndsWith,
                };
            }
            Modifier::All => {
                if s.all {
                    return Err(dup("all"));
                }
                s.all = true;
            }
            Modifier::Re => {
                if s.re.is_some() {
                    return Err(dup("re"));
                }
                s.re = Some(ReFlags::default());
            }
            Modifier::ReI | Modifier::ReM | Modifier::ReS => {
                let ok = matches!(prev, Some(Modifier::Re | Modifier::ReI | Modifier::ReM | Modifier::ReS));
                let Some(flags) = s.re.as_mut().filter(|_| ok) else {
                    return Err(Located::new(at, "`i`, `m` and `s` are flags of `re` and must follow it"));
                };
                match m {
                    Modifier::ReI => flags.case_insensitive = true,
                    Modifier::ReM => flags.multi_line = true,
                    _ => flags.dot_all = true,
                }
            }
            Modifier::Base64 => s.transforms.push(Transform::Base64),
            Modifier::Base64Offset => s.transforms.push(Transform::Base64Offset),
            Modifier::Utf16(k) => s.transforms.push(Transform::Utf16(k)),
            Modifier::Windash => s.transforms.push(Transform::Windash),
            Modifier::Cidr => s.cidr = true,
            Modifier::Exists => s.exists = true,
            Modifier::Cmp(op) => {
                if s.cmp.is_some() {
                    return Err(Located::new(at, "only one of gt, gte, lt, lte may be used"));
                }
                s.cmp = Some(op);
            }
            Modifier::Neq => s.neq = true,
            Modifier::FieldRef => s.fieldref = true,
            Modifier::Cased => s.cased = true,
            Modifier::Expand => s.expand = true,
            Modifier::Time(u) => {
                if s.time.is_some() {
                    return Err(Located::new(at, "only one time modifier may be used"));
                }
                s.time = Some(u);
            }
        }
        prev = Some(m);
    }
    let at_of = |want: fn(&Modifier) -> bool| mods.iter().find(|(m, _)| want(m)).map_or(key_pos, |(_, p)| *p);
    let conflict = |want: fn(&Modifier) -> bool, msg: &str| Err(Located::new(at_of(want), msg.to_owned()));
    let string_like = s.kind != MatchKind::Equals || !s.transforms.is_empty();
    if s.exists && mods.len() > 1 {
        return conflict(|m| *m != Modifier::Exists, "`exists` cannot be combined with other modifiers");
    }
    if s.re.is_some() && (string_like || s.cidr || s.cmp.is_some() || s.fieldref || s.time.is_some()) {
        return conflict(
            |m| {
                !matches!(
                    m,
                    Modifier::Re
                        | Modifier::ReI
                        | Modifier::ReM
                        | Modifier::ReS
                        | Modifier::All
                        | Modifier::Neq
                        | Modifier::Cased
                )
            },
            "`re` cannot be combined with this modifier",
        );
    }
    if s.cidr && (string_like || s.cmp.is_some() || s.fieldref || s.cased || s.time.is_some()) {
        return conflict(
            |m| !matches!(m, Modifier::Cidr | Modifier::All | Modifier::Neq),
            "`cidr` cannot be combined with this modifier",
        );
    }
    if s.cmp.is_some() && (string_like || s.fieldref || s.cased) {
        return conflict(
            |m| !matches!(m, Modifier::Cmp(_) | Modifier::All | Modifier::Neq | Modifier::Time(_)),
            "gt/gte/lt/lte compare numbers and take no string modifiers",
        );
    }
    if s.time.is_some() && (string_like || s.fieldref || s.cased) {
        return conflict(
            |m| !matches!(m, Modifier::Cmp(_) | Modifier::All | Modifier::Neq | Modifier::Time(_)),
            "time modifiers compare numbers and take no string modifiers",
        );
    }
    if s.fieldref && !s.transforms.is_empty() {
        return conflict(
            |m| matches!(m, Modifier::Base64 | Modifier::Base64Offset | Modifier::Utf16(_) | Modifier::Windash),
            "`fieldref` values are field names and cannot be encoded",
        );
    }
    if s.transforms.contains(&Transform::Base64Offset) && s.kind != MatchKind::Contains {
        return conflict(|m| *m == Modifier::Base64Offset, "`base64offset` must be used with `contains`");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str) -> Result<(Option<String>, ModSpec), Located> {
        parse_key(k, Pos::new(14, 9))
    }

    #[test]
    fn chains() {
        let (f, s) = p("CommandLine|contains|all").unwrap();
        assert_eq!(f.as_deref(), Some("CommandLine"));
        assert_eq!(s.kind, MatchKind::Contains);
        assert!(s.all);
        let (_, s) = p("CommandLine|re|i|m|s").unwrap();
        assert_eq!(s.re, Some(ReFlags { case_insensitive: true, multi_line: true, dot_all: true }));
        let (_, s) = p("CommandLine|wide|base64offset|contains").unwrap();
        assert_eq!(s.transforms, vec![Transform::Utf16(Utf16::Le), Transform::Base64Offset]);
        let (f, s) = p("|all").unwrap();
        assert_eq!(f, None);
        assert!(s.all);
    }

    #[test]
    fn unknown_modifier_points_at_its_column() {
        let e = p("Image|endswith|bogus").unwrap_err();
        assert_eq!(e.pos, Pos::new(14, 9 + "Image|endswith|".len()));
        assert!(e.msg.contains("bogus"));
    }

    #[test]
    fn conflicts() {
        assert!(p("a|contains|startswith").is_err());
        assert!(p("a|i").is_err());
        assert!(p("a|contains|i").is_err());
        assert!(p("a|re|contains").is_err());
        assert!(p("a|cidr|contains").is_err());
        assert!(p("a|exists|all").is_err());
        assert!(p("a|gt|contains").is_err());
        assert!(p("a|base64offset").is_err());
        assert!(p("a|gt|lt").is_err());
        assert!(p("a||b").is_err());
        assert!(p("a|fieldref|neq").is_ok());
        assert!(p("a|hour|gte").is_ok());
    }
}
