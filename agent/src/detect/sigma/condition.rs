//! The `condition` expression: `and`, `or`, `not`, parentheses, `1 of X*`, `all of X*`,
//! `1 of them`, `all of them`. Precedence, loosest first: or, and, not, `x of`, parentheses.

/// A parse or resolution error; `offset` is in characters from the start of the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondError {
    pub offset: usize,
    pub msg: String,
    /// The condition uses Sigma v1 aggregations (`| count() > 5`): not an error, not applicable.
    pub aggregation: bool,
}

fn err<T>(offset: usize, msg: impl Into<String>) -> Result<T, CondError> {
    Err(CondError { offset, msg: msg.into(), aggregation: false })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quant {
    All,
    AtLeast(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfTarget {
    Them,
    Pattern(String),
}

/// A parsed condition, names unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Id(String, usize),
    Of(Quant, OfTarget, usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

/// A condition over numbered search identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// At least n of these searches.
    AtLeast(u32, Vec<usize>),
}

impl Expr {
    /// Evaluates with `search(i)` giving the result of search identifier `i`.
    pub fn eval(&self, search: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            Expr::Search(i) => search(*i),
            Expr::Not(e) => !e.eval(search),
            Expr::And(v) => v.iter().all(|e| e.eval(search)),
            Expr::Or(v) => v.iter().any(|e| e.eval(search)),
            Expr::AtLeast(n, ids) => {
                let mut hits = 0u32;
                for &i in ids {
                    if search(i) {
                        hits += 1;
                        if hits >= *n {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Num(u32),
    Word(String),
    Pipe,
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, CondError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '|' => {
                i += 1;
                Tok::Pipe
            }
            _ => {
                while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '(' | ')' | '|') {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                match w.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "of" => Tok::Of,
                    "all" => Tok::All,
                    "them" => Tok::Them,
                    "any" => Tok::Num(1),
                    _ if w.bytes().all(|b| b.is_ascii_digit()) => match w.parse::<u32>() {
                        Ok(n) if n > 0 => Tok::Num(n),
                        _ => return err(start, format!("`{w}`: the count of `x of` must be a positive number")),
                    },
                    _ => {
                        if let Some(bad) =
                            w.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '*' | '.')))
                        {
                            return err(start, format!("unexpected character `{bad}` in `{w}`"));
                        }
                        Tok::Word(w)
                    }
                }
            }
        };
        out.push((tok, start));
    }
    Ok(out)
}

struct P {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end: usize,
    depth: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |(_, o)| *o)
    }

    fn or(&mut self) -> Result<Cond, CondError> {
        let mut v = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Cond::Or(v) })
    }

    fn and(&mut self) -> Result<Cond, CondError> {
        let mut v = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Cond::And(v) })
    }

    fn not(&mut self) -> Result<Cond, CondError> {
        if self.peek() == Some(&Tok::Not) {
            self.i += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn enter(&mut self) -> Result<(), CondError> {
        self.depth += 1;
        if self.depth > 64 {
            return err(self.at(), "condition nested too deeply");
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Cond, CondError> {
        let at = self.at();
        let Some((tok, _)) = self.toks.get(self.i).cloned() else {
            return err(at, "condition ends where an identifier was expected");
        };
        self.i += 1;
        match tok {
            Tok::LParen => {
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    return err(self.at(), "missing `)`");
                }
                self.i += 1;
                Ok(inner)
            }
            Tok::Num(n) => self.of(Quant::AtLeast(n), at),
            Tok::All => self.of(Quant::All, at),
            Tok::Word(w) => Ok(Cond::Id(w, at)),
            Tok::Pipe => Err(CondError { offset: at, msg: "aggregation".into(), aggregation: true }),
            t => err(at, format!("unexpected {}", describe(&t))),
        }
    }

    fn of(&mut self, q: Quant, at: usize) -> Result<Cond, CondError> {
        if self.peek() != Some(&Tok::Of) {
            return err(self.at(), "expected `of` after the count");
        }
        self.i += 1;
        let target_at = self.at();
        match self.toks.get(self.i).cloned() {
            Some((Tok::Them, _)) => {
                self.i += 1;
                Ok(Cond::Of(q, OfTarget::Them, at))
            }
            Some((Tok::Word(w), _)) => {
                self.i += 1;
                Ok(Cond::Of(q, OfTarget::Pattern(w), at))
            }
            _ => err(target_at, "expected `them` or a search identifier pattern after `of`"),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::And => "`and`".into(),
        Tok::Or => "`or`".into(),
        Tok::Not => "`not`".into(),
        Tok::Of => "`of`".into(),
        Tok::All => "`all`".into(),
        Tok::Them => "`them`".into(),
        Tok::Num(n) => format!("`{n}`"),
        Tok::Word(w) => format!("`{w}`"),
        Tok::Pipe => "`|`".into(),
    }
}

/// Parses a condition string.
pub fn parse(s: &str) -> Result<Cond, CondError> {
    if let Some(at) = s.chars().position(|c| c == '|') {
        return Err(CondError { offset: at, msg: "aggregation".into(), aggregation: true });
    }
    let toks = lex(s)?;
    if let Some((_, at)) = toks.iter().find(|(t, _)| *t == Tok::Pipe) {
        return Err(CondError { offset: *at, msg: "aggregation".into(), aggregation: true });
    }
    let end = s.chars().count();
    let mut p = P { toks, i: 0, end, depth: 0 };
    if p.toks.is_empty() {
        return err(0, "empty condition");
    }
    let c = p.or()?;
    if let Some((t, at)) = p.toks.get(p.i) {
        return err(*at, format!("unexpected {} (missing `and`/`or`?)", describe(t)));
    }
    Ok(c)
}

/// `*` wildcards only, as the spec defines for identifier patterns.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Cond {
    /// Resolves identifiers against `names` (the search identifiers, in order).
    pub fn resolve(&self, names: &[String]) -> Result<Expr, CondError> {
        Ok(match self {
            Cond::Id(n, at) => match names.iter().position(|x| x == n) {
                Some(i) => Expr::Search(i),
                None => return err(*at, format!("`{n}` is not a search identifier of this rule")),
            },
            Cond::Not(c) => Expr::Not(Box::new(c.resolve(names)?)),
            Cond::And(v) => Expr::And(v.iter().map(|c| c.resolve(names)).collect::<Result<_, _>>()?),
            Cond::Or(v) => Expr::Or(v.iter().map(|c| c.resolve(names)).collect::<Result<_, _>>()?),
            Cond::Of(q, target, at) => {
                let ids: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| match target {
                        OfTarget::Them => !n.starts_with('_'),
                        OfTarget::Pattern(p) => name_matches(p, n),
                    })
                    .map(|(i, _)| i)
                    .collect();
                if ids.is_empty() {
                    let what = match target {
                        OfTarget::Them => "them".to_owned(),
                        OfTarget::Pattern(p) => format!("`{p}`"),
                    };
                    return err(*at, format!("{what} matches no search identifier"));
                }
                match q {
                    Quant::All => Expr::And(ids.into_iter().map(Expr::Search).collect()),
                    Quant::AtLeast(1) => Expr::Or(ids.into_iter().map(Expr::Search).collect()),
                    Quant::AtLeast(n) => Expr::AtLeast(*n, ids),
                }
            }
        })
    }

    /// Every identifier named directly (not through `x of`), with its offset.
    pub fn identifiers(&self, out: &mut Vec<(String, usize)>) {
        match self {
            Cond::Id(n, at) => out.push((n.clone(), *at)),
            Cond::Of(..) => {}
            Cond::Not(c) => c.identifiers(out),
            Cond::And(v) | Cond::Or(v) => v.iter().for_each(|c| c.identifiers(out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn eval(cond: &str, ids: &[&str], truth: &[bool]) -> bool {
        let e = parse(cond).unwrap().resolve(&names(ids)).unwrap();
        e.eval(&mut |i| truth[i])
    }

    #[test]
    fn precedence_not_and_or() {
        // a or b and c == a or (b and c)
        assert!(eval("a or b and c", &["a", "b", "c"], &[true, false, false]));
        assert!(!eval("(a or b) and c", &["a", "b", "c"], &[true, false, false]));
        // not binds tighter than and
        assert!(eval("not a and b", &["a", "b"], &[false, true]));
        assert!(!eval("not (a and b)", &["a", "b"], &[true, true]));
        assert!(eval("not a or b", &["a", "b"], &[true, true]));
        assert!(eval("not not a", &["a"], &[true]));
        assert!(eval("A AND NOT B", &["A", "B"], &[true, false]));
    }

    #[test]
    fn of_forms() {
        let ids = ["selection_a", "selection_b", "filter", "_hidden"];
        assert!(eval("1 of selection*", &ids, &[false, true, false, false]));
        assert!(!eval("all of selection*", &ids, &[false, true, false, false]));
        assert!(eval("all of selection*", &ids, &[true, true, false, false]));
        assert!(eval("1 of them", &ids, &[false, false, true, false]));
        // `them` excludes identifiers that start with an underscore.
        assert!(!eval("1 of them", &ids, &[false, false, false, true]));
        assert!(eval("all of them", &ids, &[true, true, true, false]));
        assert!(eval("1 of selection* and not filter", &ids, &[true, false, false, false]));
        assert!(!eval("1 of selection* and not filter", &ids, &[true, false, true, false]));
        assert!(eval("1 of selection* and not 1 of filter*", &ids, &[true, false, false, false]));
        assert!(eval("2 of them", &ids, &[true, false, true, false]));
        assert!(!eval("2 of them", &ids, &[true, false, false, true]));
        assert!(eval("any of sel*_b", &ids, &[false, true, false, false]));
        assert!(eval("1 of _*", &ids, &[false, false, false, true]));
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse("selection and").unwrap_err();
        assert_eq!(e.offset, 13);
        let e = parse("selection filter").unwrap_err();
        assert_eq!(e.offset, 10);
        let e = parse("(a or b").unwrap_err();
        assert!(e.msg.contains(")"));
        let e = parse("a and b)").unwrap_err();
        assert_eq!(e.offset, 7);
        let e = parse("selection | count() > 5").unwrap_err();
        assert!(e.aggregation);
        let e = parse("1 of").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = parse("a and nope").unwrap().resolve(&names(&["a"])).unwrap_err();
        assert_eq!(e.offset, 6);
        let e = parse("1 of filter*").unwrap().resolve(&names(&["a"])).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(parse("").is_err());
        assert!(parse("0 of them").is_err());
        assert!(parse(&"(".repeat(500)).is_err());
        assert!(parse(&"not ".repeat(500)).is_err());
    }
}
