//! Label and field selectors, as apimachinery parses, matches and prints them.
//!
//! - [`LabelSelector`]: the query-string syntax of `labels.Parse` (`app=web,tier in (a,b),!canary`), and
//!   the conversion from a `metav1.LabelSelector` (`matchLabels` + `matchExpressions`), with the same
//!   validation and messages; printed back in the canonical form kubectl shows in `Selector` columns.
//! - [`FieldSelector`]: the `fields.ParseSelector` syntax (`metadata.name=x,spec.nodeName!=`), with its
//!   backslash escaping. It only parses and evaluates: which field labels a kind supports, and their
//!   values, come from the caller (the registry), through a lookup closure.
//!
//! Everything is pure. A nil `metav1.LabelSelector` (which selects nothing) is the caller's business:
//! [`LabelSelector::from_api`] takes a present one.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::field::{ErrorKind, ErrorList, FieldError, Path};
use crate::validation::common::{is_qualified_name, is_valid_label_value};

/// Why a selector could not be parsed, converted or evaluated. Messages follow apimachinery's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The label selector text is not well formed, e.g. `found ',', expected: identifier after ','`.
    /// The message is complete, including upstream's `unable to parse requirement: ` prefix when the
    /// fault is inside one requirement.
    #[error("{0}")]
    Syntax(String),
    /// A requirement is well formed but its key, operator or values are invalid (bad label key, value
    /// that is not a label value, `in` with no values, `gt` with a non-integer). `parsing` is set when it
    /// came from the query-string parser, which prefixes its message.
    #[error("{}", render_invalid(errors, *parsing))]
    InvalidRequirement { errors: ErrorList, parsing: bool },
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{0:?} is not a valid pod selector operator")]
    UnknownOperator(String),
    /// A field selector term has none of `=`, `==`, `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A field selector value has a backslash not followed by `\`, `,` or `=` (or a trailing one).
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value has a bare `,` or `=`. Upstream prints the character's code point
    /// (`44` for `,`), and so do we.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    /// A field selector names a field the kind does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

fn render_invalid(errors: &ErrorList, parsing: bool) -> String {
    let text = render_aggregate(errors);
    if parsing {
        format!("unable to parse requirement: {text}")
    } else {
        text
    }
}

/// Like Go's `utilerrors.Aggregate`: one error alone, several as `[a, b]` without repeats.
fn render_aggregate(errors: &ErrorList) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    if seen.len() == 1 {
        return seen.remove(0);
    }
    if seen.is_empty() {
        return String::new();
    }
    format!("[{}]", seen.join(", "))
}

// ---------------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operator {
    /// `a=b`
    Equals,
    /// `a==b` (same meaning as `=`; kept so the text round-trips)
    DoubleEquals,
    /// `a!=b`: true also when the label is absent.
    NotEquals,
    /// `a in (x,y)`
    In,
    /// `a notin (x,y)`: true also when the label is absent.
    NotIn,
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
    /// `a>1`: the label is an integer greater than the value.
    GreaterThan,
    /// `a<1`: the label is an integer less than the value.
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement, like `labels.NewRequirement`: the key must be a qualified
    /// name, every value a label value, and the number of values must suit the operator.
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let errors = requirement_errors(key, op, &values, Some(&Path::new("key")));
        if !errors.is_empty() {
            return Err(SelectorError::InvalidRequirement {
                errors,
                parsing: false,
            });
        }
        Ok(Requirement {
            key: key.to_owned(),
            op,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.op
    }

    /// The values, in the order given (the parser gives them sorted and without repeats).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Does a set of labels satisfy this requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                labels.get(&self.key).is_some_and(|v| has(v))
            }
            Operator::NotEquals | Operator::NotIn => labels.get(&self.key).is_none_or(|v| !has(v)),
            Operator::Exists => labels.contains_key(&self.key),
            Operator::DoesNotExist => !labels.contains_key(&self.key),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer never satisfies an inequality.
                let Some(actual) = labels.get(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, set) = match self.op {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if set {
            f.write_str("(")?;
        }
        // Values print sorted so equal selectors print equally.
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements, kept sorted by key as upstream does, so it
/// prints deterministically. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Parses the query-string syntax (`labelSelector=` in a list URL, `kubectl -l`).
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(text).parse()?;
        // Stable, like Go's insertion sort for the small lists selectors are.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Converts a `metav1.LabelSelector` (a present one: a nil selector matches nothing and is the
    /// caller's to handle). An empty one matches everything.
    pub fn from_api(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_owned())),
            };
            requirements.push(Requirement::new(
                &expr.key,
                op,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Do these labels satisfy every requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The single value the selector demands for `key` (`key=v`, `key==v` or `key in (v)`), if any.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.op, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical text: `app=nginx,tier in (db,web)`; empty for the everything selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `metav1.FormatLabelSelector`: a present selector as text, `<none>` when it selects everything or is
/// absent, `<error>` when it is invalid. Used by the `Selector` and `Pod-Selector` table columns.
pub fn format_label_selector(selector: Option<&metav1::LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "<none>".to_owned();
    };
    match LabelSelector::from_api(selector) {
        Ok(s) if s.is_empty() => "<none>".to_owned(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_owned(),
    }
}

/// `labels.FormatLabels`: a label map as `k=v,k=v` in key order, `<none>` when empty.
pub fn format_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(l) if !l.is_empty() => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_owned(),
    }
}

/// The checks of `labels.NewRequirement`. `key_path` is where a bad key is reported (`key`); `None`
/// when the parser has checked the key already.
fn requirement_errors(
    key: &str,
    op: Operator,
    values: &[String],
    key_path: Option<&Path>,
) -> ErrorList {
    let mut errors = ErrorList::new();
    if let Some(e) = key_path.and_then(|path| label_key_error(key, path.clone())) {
        errors.push(e);
    }
    let values_path = Path::new("values");
    let list = || serde_json::Value::from(values.to_vec());
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => errors.push(FieldError::invalid(
            values_path.clone(),
            list(),
            "for 'in', 'notin' operators, values set can't be empty",
        )),
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errors.push(FieldError::invalid(
                values_path.clone(),
                list(),
                "exact-match compatibility requires one single value",
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            errors.push(FieldError::invalid(
                values_path.clone(),
                list(),
                "values set must be empty for exists and does not exist",
            ))
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errors.push(FieldError::invalid(
                    values_path.clone(),
                    list(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errors.push(FieldError::invalid(
                        values_path.index(i),
                        v.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let problems = is_valid_label_value(v);
        if !problems.is_empty() {
            errors.push(FieldError::invalid(
                values_path.index(i).key(key),
                v.as_str(),
                problems.join("; "),
            ));
        }
    }
    errors
}

fn label_key_error(key: &str, path: Path) -> Option<FieldError> {
    let problems = is_qualified_name(key);
    if problems.is_empty() {
        return None;
    }
    Some(FieldError {
        kind: ErrorKind::Invalid,
        field: path,
        value: Some(key.into()),
        detail: problems.join("; "),
    })
}

// --- the query-string parser (labels.Parse) ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the text into tokens. Identifiers run until whitespace or an operator character; operator
/// characters combine greedily into the longest known operator (`!=`, `==`).
fn lex(text: &str) -> Vec<(Token, String)> {
    let b = text.as_bytes();
    // A NUL byte ends the input, as in upstream's lexer.
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < end && is_whitespace(b[pos]) {
            pos += 1;
        }
        if pos >= end {
            out.push((Token::EndOfString, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            let mut best = None;
            let mut len = 0;
            while pos + len < end && is_special(b[pos + len]) {
                len += 1;
                match keyword(&text[pos..pos + len]) {
                    Some(t) => best = Some((t, len)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single operator character is a token, so `best` is always set.
            let (tok, l) = best.unwrap_or((Token::Identifier, len));
            out.push((tok, text[pos..pos + l].to_owned()));
            pos += l;
        } else {
            let start = pos;
            while pos < end && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let word = &text[start..pos];
            out.push((keyword(word).unwrap_or(Token::Identifier), word.to_owned()));
        }
    }
}

/// Where the parser is: after a key, `in`/`notin` are operators; where values go, they are words.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

fn syntax(msg: String) -> SelectorError {
    SelectorError::Syntax(msg)
}

fn in_requirement(e: SelectorError) -> SelectorError {
    match e {
        SelectorError::Syntax(m) => {
            SelectorError::Syntax(format!("unable to parse requirement: {m}"))
        }
        SelectorError::InvalidRequirement { errors, .. } => SelectorError::InvalidRequirement {
            errors,
            parsing: true,
        },
        other => other,
    }
}

impl Parser {
    fn new(text: &str) -> Self {
        Parser {
            items: lex(text),
            pos: 0,
        }
    }

    fn adjust(tok: Token, ctx: Context) -> Token {
        match tok {
            Token::In | Token::NotIn if ctx == Context::Values => Token::Identifier,
            t => t,
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        let (t, l) = &self.items[self.pos.min(self.items.len() - 1)];
        (Self::adjust(*t, ctx), l.clone())
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let item = self.lookahead(ctx);
        if self.pos < self.items.len() - 1 {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    out.push(self.requirement().map_err(in_requirement)?);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(out),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(out),
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.key_and_inferred_operator()?;
        let (op, values) = match unary {
            Some(op) => (op, Vec::new()),
            None => {
                let op = self.operator()?;
                let values = match op {
                    Operator::In | Operator::NotIn => self.value_set()?,
                    _ => vec![self.exact_value()?],
                };
                (op, values)
            }
        };
        // The key was checked by key_and_inferred_operator.
        let errors = requirement_errors(&key, op, &values, None);
        if !errors.is_empty() {
            return Err(SelectorError::InvalidRequirement {
                errors,
                parsing: false,
            });
        }
        Ok(Requirement { key, op, values })
    }

    /// `[!] KEY`, inferring Exists when the key stands alone.
    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), SelectorError> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(syntax(format!("found '{lit}', expected: identifier")));
        }
        // Upstream checks the key here against a nil field path, which Go prints as `<nil>`.
        if let Some(e) = label_key_error(&lit, Path::new("<nil>")) {
            return Err(SelectorError::Syntax(e.to_string()));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(syntax(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// `( v1, v2 )`: sorted, without repeats; empty entries are the empty value.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(syntax(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        let mut values = match tok {
            Token::Identifier | Token::Comma => {
                let list = self.identifier_list()?;
                let (close, _) = self.consume(Context::Values);
                if close != Token::ClosedPar {
                    return Err(syntax(format!("found '{lit}', expected: ')'")));
                }
                list
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                vec![String::new()]
            }
            _ => {
                return Err(syntax(format!(
                    "found '{lit}', expected: ',', ')' or identifier"
                )));
            }
        };
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut set: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.push(lit);
                    let (next, next_lit) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => {
                            return Err(syntax(format!(
                                "found '{next_lit}', expected: ',' or ')'"
                            )));
                        }
                    }
                }
                Token::Comma => {
                    // `(,a`, `a,)` and `a,,b` all carry the empty value.
                    if set.is_empty() {
                        set.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        set.push(String::new());
                        return Ok(set);
                    }
                    if next == Token::Comma {
                        set.push(String::new());
                    }
                }
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<String, SelectorError> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(String::new());
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(lit)
        } else {
            Err(syntax(format!("found '{lit}', expected: identifier")))
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------------

/// The operator of one field selector term (`=` and `==` mean the same and print as `=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field op value` term, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// A parsed field selector: the AND of its terms, sorted by their text as upstream sorts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses `fieldSelector=` text: comma-separated `field=value`, `field==value`, `field!=value`;
    /// `\,`, `\=` and `\\` in values stand for themselves.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(text);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: text.to_owned(),
                    term: part.to_owned(),
                });
            };
            terms.push(FieldTerm {
                field: field.to_owned(),
                op,
                value: unescape_value(raw)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Fails on the first field `supported` rejects, with upstream's `field label not supported: x`.
    /// The server calls this before reading the store, so a bad selector fails even on an empty list.
    pub fn check_fields(&self, supported: impl Fn(&str) -> bool) -> Result<(), SelectorError> {
        match self.terms.iter().find(|t| !supported(&t.field)) {
            Some(t) => Err(SelectorError::UnsupportedField(t.field.clone())),
            None => Ok(()),
        }
    }

    /// Evaluates the selector on one object; `get` returns a field's value, or `None` when the kind
    /// does not support that field (an error, whatever the other terms say).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> Result<bool, SelectorError> {
        let mut all = true;
        for t in &self.terms {
            let Some(actual) = get(&t.field) else {
                return Err(SelectorError::UnsupportedField(t.field.clone()));
            };
            let equal = actual == t.value;
            all &= match t.op {
                FieldOp::Equals => equal,
                FieldOp::NotEquals => !equal,
            };
        }
        Ok(all)
    }

    /// The value the selector pins `field` to with `=`/`==`, if any: the server narrows its store read
    /// to one name or one namespace with `requires_exact_match("metadata.name")` and
    /// `requires_exact_match("metadata.namespace")`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op == FieldOp::Equals)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// `a=b,c!=d`, values escaped again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// `fields.EscapeValue`: backslash-escapes `\`, `,` and `=`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator; the field part has no escaping, so `!=` is tried before `==`
/// before `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape(format!("\\{c}")));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(SelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    if escaped {
        return Err(SelectorError::InvalidEscape("\\".to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
