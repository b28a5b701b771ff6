//! Sigma string values: wildcards and escaping, the encoding transformations (base64,
//! base64offset, utf16, windash), and the compiled string matchers.
//!
//! Case-insensitive matching (Sigma's default) compares lowercased text: both the rule value and
//! the event value are lowercased character by character ([`lower_into`]), once per value. The
//! prefilter works on the same lowercased text, so a literal a rule requires is always found there.

use memchr::memmem;

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// A string value with its wildcards parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigmaString {
    pub parts: Vec<Part>,
}

impl SigmaString {
    /// Parses wildcards and escapes per the spec: `\*`, `\?` and `\\` stand for the character
    /// itself; a backslash before any other character is a plain backslash.
    pub fn parse(s: &str) -> Self {
        let mut out = SigmaString::default();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => out.push(Part::Star),
                '?' => out.push(Part::One),
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push_char(n);
                    }
                    _ => out.push_char('\\'),
                },
                _ => out.push_char(c),
            }
        }
        out
    }

    /// A string taken literally (no wildcards).
    pub fn literal(s: &str) -> Self {
        let mut out = SigmaString::default();
        if !s.is_empty() {
            out.parts.push(Part::Lit(s.to_owned()));
        }
        out
    }

    fn push(&mut self, p: Part) {
        // `**` is `*`.
        if p == Part::Star && self.parts.last() == Some(&Part::Star) {
            return;
        }
        self.parts.push(p);
    }

    fn push_char(&mut self, c: char) {
        if let Some(Part::Lit(s)) = self.parts.last_mut() {
            s.push(c);
        } else {
            self.parts.push(Part::Lit(c.to_string()));
        }
    }

    pub fn has_wildcards(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    /// The text if there are no wildcards.
    pub fn plain(&self) -> Option<String> {
        if self.has_wildcards() {
            return None;
        }
        Some(self.parts.iter().map(|p| if let Part::Lit(s) = p { s.as_str() } else { "" }).collect())
    }

    pub fn with_star_before(mut self) -> Self {
        if self.parts.first() != Some(&Part::Star) {
            self.parts.insert(0, Part::Star);
        }
        self
    }

    pub fn with_star_after(mut self) -> Self {
        self.push(Part::Star);
        self
    }

    pub fn lowercased(&self) -> Self {
        let parts = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => {
                    let mut l = String::with_capacity(s.len());
                    lower_into(s, &mut l);
                    Part::Lit(l)
                }
                other => other.clone(),
            })
            .collect();
        SigmaString { parts }
    }

    /// The longest literal run (what the prefilter looks for).
    pub fn longest_literal(&self) -> Option<&str> {
        self.parts
            .iter()
            .filter_map(|p| if let Part::Lit(s) = p { Some(s.as_str()) } else { None })
            .max_by_key(|s| s.len())
            .filter(|s| !s.is_empty())
    }

    /// `windash`: every `-` or `/` (or en dash, em dash, horizontal bar) that starts a flag — at
    /// the start or after a non-word character, and before a word character — in each of its five
    /// spellings. `None` if that would make more than `max` variants.
    pub fn windash(&self, max: usize) -> Option<Vec<SigmaString>> {
        const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
        // Flatten to (char or wildcard) to look at neighbours across parts.
        let mut flat: Vec<Option<char>> = Vec::new();
        let mut wild: Vec<Part> = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => flat.extend(s.chars().map(Some)),
                w => {
                    flat.push(None);
                    wild.push(w.clone());
                }
            }
        }
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let spots: Vec<usize> = (0..flat.len())
            .filter(|&i| {
                flat[i].is_some_and(|c| DASHES.contains(&c))
                    && (i == 0 || !is_word(flat[i - 1]))
                    && is_word(flat.get(i + 1).copied().flatten())
            })
            .collect();
        let count = DASHES.len().checked_pow(u32::try_from(spots.len()).ok()?)?;
        if count > max {
            return None;
        }
        let mut out = Vec::with_capacity(count);
        for mut n in 0..count {
            let mut variant = flat.clone();
            for &s in &spots {
                variant[s] = Some(DASHES[n % DASHES.len()]);
                n /= DASHES.len();
            }
            let mut st = SigmaString::default();
            let mut w = wild.iter();
            for c in variant {
                match c {
                    Some(c) => st.push_char(c),
                    None => st.push(w.next().cloned().unwrap_or(Part::Star)),
                }
            }
            out.push(st);
        }
        Some(out)
    }
}

/// Lowercases character by character (no context rules, so lowering commutes with substring
/// search), appending to `out`. `ſ` (long s, whose simple case folding is `s`) becomes `s`, so
/// that lowered text holds every literal a case-insensitive regular expression can match
/// (the prefilter looks for lowered literals in lowered text).
pub fn lower_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        // Safe on the ASCII tail just pushed.
        if let Some(tail) = out.get_mut(start..) {
            tail.make_ascii_lowercase();
        }
    } else {
        for c in s.chars() {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else if c == 'ſ' {
                out.push('s');
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
}

pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lower_into(s, &mut out);
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, &x) in idx.iter().enumerate() {
            if i <= chunk.len() {
                out.push(B64[x as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The three spellings of `data` inside a longer base64 text, one per alignment: the characters
/// that depend on unknown neighbouring bytes are cut off.
pub fn base64_offsets(data: &[u8]) -> Vec<String> {
    const CUT_START: [usize; 3] = [0, 2, 3];
    let mut out = Vec::with_capacity(3);
    for (shift, cut_start) in CUT_START.iter().enumerate() {
        let mut padded = vec![b' '; shift];
        padded.extend_from_slice(data);
        let enc = base64(&padded);
        let cut_end = match (data.len() + shift) % 3 {
            0 => 0,
            1 => 3,
            _ => 2,
        };
        let end = enc.len().saturating_sub(cut_end);
        if let Some(s) = enc.get(*cut_start..end) {
            if !s.is_empty() && !out.iter().any(|o: &String| o == s) {
                out.push(s.to_owned());
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf16 {
    Le,
    Be,
    /// Little-endian with a byte order mark.
    Bom,
}

pub fn utf16(s: &[u8], kind: Utf16) -> Vec<u8> {
    let text = String::from_utf8_lossy(s);
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    if kind == Utf16::Bom {
        out.extend_from_slice(&[0xFF, 0xFE]);
    }
    for u in text.encode_utf16() {
        match kind {
            Utf16::Be => out.extend_from_slice(&u.to_be_bytes()),
            _ => out.extend_from_slice(&u.to_le_bytes()),
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(String),
    One,
}

/// A compiled wildcard pattern over text.
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(Box<memmem::Finder<'static>>),
    /// `*` alone: any value, even empty.
    Any,
    Glob(Glob),
}

/// The general case: pieces between stars, each a run of literals and `?`.
#[derive(Debug, Clone)]
pub struct Glob {
    segs: Vec<Vec<Tok>>,
    anchored_start: bool,
    anchored_end: bool,
}

impl StrMatch {
    pub fn new(s: &SigmaString) -> StrMatch {
        let p = &s.parts;
        let lit = |x: &Part| if let Part::Lit(s) = x { Some(s.clone()) } else { None };
        match p.as_slice() {
            [] => return StrMatch::Exact(String::new()),
            [Part::Star] => return StrMatch::Any,
            [Part::Lit(a)] => return StrMatch::Exact(a.clone()),
            [Part::Lit(a), Part::Star] => return StrMatch::Prefix(a.clone()),
            [Part::Star, Part::Lit(a)] => return StrMatch::Suffix(a.clone()),
            [Part::Star, Part::Lit(a), Part::Star] => {
                return StrMatch::Contains(Box::new(memmem::Finder::new(a.as_bytes()).into_owned()))
            }
            _ => {}
        }
        let anchored_start = p.first() != Some(&Part::Star);
        let anchored_end = p.last() != Some(&Part::Star);
        let mut segs = vec![Vec::new()];
        for part in p {
            match part {
                Part::Star => segs.push(Vec::new()),
                Part::One => segs.last_mut().into_iter().for_each(|s| s.push(Tok::One)),
                Part::Lit(_) => {
                    segs.last_mut().into_iter().for_each(|s| s.push(Tok::Lit(lit(part).unwrap_or_default())))
                }
            }
        }
        StrMatch::Glob(Glob { segs, anchored_start, anchored_end })
    }

    pub fn is_match(&self, text: &str) -> bool {
        match self {
            StrMatch::Exact(s) => text == s,
            StrMatch::Prefix(s) => text.starts_with(s.as_str()),
            StrMatch::Suffix(s) => text.ends_with(s.as_str()),
            StrMatch::Contains(f) => f.find(text.as_bytes()).is_some(),
            StrMatch::Any => true,
            StrMatch::Glob(g) => g.is_match(text),
        }
    }
}

/// Matches `seg` at byte offset `at`; returns the end offset.
fn seg_at(seg: &[Tok], text: &str, mut at: usize) -> Option<usize> {
    for t in seg {
        let rest = text.get(at..)?;
        match t {
            Tok::Lit(s) => {
                if !rest.starts_with(s.as_str()) {
                    return None;
                }
                at += s.len();
            }
            Tok::One => at += rest.chars().next()?.len_utf8(),
        }
    }
    Some(at)
}

fn seg_chars(seg: &[Tok]) -> usize {
    seg.iter().map(|t| if let Tok::Lit(s) = t { s.chars().count() } else { 1 }).sum()
}

impl Glob {
    /// The longest literal run (for the prefilter).
    pub fn longest_literal(&self) -> Option<&str> {
        self.segs
            .iter()
            .flatten()
            .filter_map(|t| if let Tok::Lit(s) = t { Some(s.as_str()) } else { None })
            .max_by_key(|s| s.len())
    }

    fn is_match(&self, text: &str) -> bool {
        let n = self.segs.len();
        let mut pos = 0;
        for (i, seg) in self.segs.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == n;
            if first && self.anchored_start {
                match seg_at(seg, text, 0) {
                    Some(end) => pos = end,
                    None => return false,
                }
                if last {
                    // No star at all: the whole text.
                    return !self.anchored_end || pos == text.len();
                }
                continue;
            }
            if seg.is_empty() {
                continue;
            }
            if last && self.anchored_end {
                let chars = seg_chars(seg);
                let start = if chars == 0 {
                    text.len()
                } else {
                    match text.char_indices().rev().nth(chars - 1) {
                        Some((i, _)) => i,
                        None => return false,
                    }
                };
                return start >= pos && seg_at(seg, text, start) == Some(text.len());
            }
            // Leftmost occurrence at or after `pos` (leftmost is always the best choice).
            let found = match seg.first() {
                Some(Tok::Lit(l)) => {
                    let mut from = pos;
                    loop {
                        let Some(rest) = text.get(from..) else { return false };
                        let Some(off) = memmem::find(rest.as_bytes(), l.as_bytes()) else { return false };
                        if let Some(end) = seg_at(seg, text, from + off) {
                            break end;
                        }
                        // Next char boundary after this candidate.
                        from += off + rest[off..].chars().next().map_or(1, char::len_utf8);
                    }
                }
                _ => {
                    let mut hit = None;
                    let starts = text.get(pos..).map(|r| r.char_indices().map(|(i, _)| pos + i).collect::<Vec<_>>());
                    for s in starts.unwrap_or_default() {
                        if let Some(end) = seg_at(seg, text, s) {
                            hit = Some(end);
                            break;
                        }
                    }
                    match hit {
                        Some(e) => e,
                        None => return false,
                    }
                }
            };
            pos = found;
        }
        // The pattern ends with a star (or the last piece was matched leftmost).
        !self.anchored_end || pos == text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, text: &str) -> bool {
        StrMatch::new(&SigmaString::parse(pat)).is_match(text)
    }

    #[test]
    fn escaping_per_spec() {
        let lit = |s: &str| SigmaString::parse(s).plain();
        assert_eq!(lit(r"C:\Windows\x"), Some(r"C:\Windows\x".into()));
        assert_eq!(lit(r"a\*b"), Some("a*b".into()));
        assert_eq!(lit(r"a\?b"), Some("a?b".into()));
        assert_eq!(lit(r"a\\b"), Some(r"a\b".into()));
        assert_eq!(lit(r"a\\\\b"), Some(r"a\\b".into()));
        assert_eq!(lit(r"trailing\"), Some(r"trailing\".into()));
        // `\\*`: a backslash then a wildcard.
        assert_eq!(SigmaString::parse(r"a\\*").parts, vec![Part::Lit(r"a\".into()), Part::Star]);
        // `\\\*`: a backslash then a plain star.
        assert_eq!(lit(r"a\\\*"), Some(r"a\*".into()));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axxb"));
        assert!(m(r"a\\*", r"a\anything"));
        assert!(m(r"what\?", "what?"));
        assert!(!m(r"what\?", "whatx"));
    }

    #[test]
    fn wildcards() {
        assert!(m("*", ""));
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(m("ab*", "abcd"));
        assert!(m("*cd", "abcd"));
        assert!(m("*bc*", "abcd"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("a?c", "aéc"));
        assert!(m("a*c*e", "abcde"));
        assert!(!m("a*c*e", "abcdef"));
        assert!(m("*a*a*", "banana"));
        assert!(m("/usr/*/python?", "/usr/local/bin/python3"));
        assert!(!m("/usr/*/python?", "/usr/local/bin/python"));
        assert!(m("?*", "x"));
        assert!(!m("?*", ""));
        assert!(m("*?", "x"));
        assert!(m("a*b?", "aXbYbZ"));
        assert!(m("*ab?", "xxabab1"));
        assert!(m("a**b", "ab"));
    }

    #[test]
    fn lowering() {
        assert_eq!(lower("/USR/Bin"), "/usr/bin");
        assert_eq!(lower("ÄÖ"), "äö");
        assert_eq!(SigmaString::parse("A*B").lowercased(), SigmaString::parse("a*b"));
    }

    #[test]
    fn base64_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64_offsets_find_the_value_at_every_alignment() {
        let needle = b"/bin/sh -i";
        let offs = base64_offsets(needle);
        assert_eq!(offs.len(), 3);
        for prefix in ["", "x", "xy", "xyz", "wxyz"] {
            for suffix in ["", "q", "qr"] {
                let whole = format!("{prefix}/bin/sh -i{suffix}");
                let enc = base64(whole.as_bytes());
                assert!(offs.iter().any(|o| enc.contains(o.as_str())), "{whole} → {enc} vs {offs:?}");
            }
        }
    }

    #[test]
    fn utf16_forms() {
        assert_eq!(utf16(b"cmd", Utf16::Le), vec![0x63, 0, 0x6d, 0, 0x64, 0]);
        assert_eq!(utf16(b"cmd", Utf16::Be), vec![0, 0x63, 0, 0x6d, 0, 0x64]);
        assert_eq!(utf16(b"cmd", Utf16::Bom), vec![0xFF, 0xFE, 0x63, 0, 0x6d, 0, 0x64, 0]);
    }

    #[test]
    fn windash_variants() {
        let v = SigmaString::parse("-exec bypass /x a-b").windash(1000).unwrap();
        // Two flag positions (`-exec`, `/x`); `a-b` is inside a word.
        assert_eq!(v.len(), 25);
        let texts: Vec<String> = v.iter().map(|s| s.plain().unwrap()).collect();
        assert!(texts.contains(&"/exec bypass -x a-b".to_owned()));
        assert!(texts.contains(&"\u{2013}exec bypass \u{2015}x a-b".to_owned()));
        assert!(texts.iter().all(|t| t.ends_with("a-b")));
        assert!(SigmaString::parse("-a -b -c -d -e -f").windash(1000).is_none());
    }
}
