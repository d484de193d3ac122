//! The lexer and parser of the rule language: expression text to a syntax tree
//! whose every node knows its byte span, and errors that point at the fault.
//!
//! Grammar (lowest precedence first; `docs/strategies.md` has the whole language):
//! ```text
//! expr    = or
//! or      = and ("or" and)*
//! and     = not ("and" not)*
//! not     = "not" not | compare
//! compare = sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     = product (("+" | "-") product)*
//! product = unary (("*" | "/") unary)*
//! unary   = "-" unary | postfix
//! postfix = primary ("[" expr "]")*
//! primary = number | string | "true" | "false" | name | name "(" args? ")" | "(" expr ")"
//! ```

/// Byte offsets `[start, end)` in the expression text.
pub type Span = (usize, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

/// A node of the syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Ast {
    pub kind: AstKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AstKind {
    Num(f64),
    Str(String),
    Bool(bool),
    Name(String),
    Call {
        name: String,
        name_span: Span,
        args: Vec<Ast>,
    },
    /// `x[n]`: the value of `x` n updates ago.
    Index(Box<Ast>, Box<Ast>),
    Unary(UnOp, Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
}

/// What is wrong, where (a span of the expression) and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub span: Span,
    pub message: String,
    pub fix: String,
}

impl ExprError {
    pub fn new(span: Span, message: impl Into<String>, fix: impl Into<String>) -> Self {
        ExprError {
            span,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("the number {n}"),
        Tok::Str(s) => format!("the string \"{s}\""),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::End => "the end of the expression".into(),
    }
}

const PUNCT: [&str; 15] = [
    "<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",",
];

fn lex(src: &str) -> Result<Vec<(Tok, Span)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = src[start..i].replace('_', "");
            let n: f64 = text.parse().map_err(|_| {
                ExprError::new(
                    (start, i),
                    format!("`{}` is not a number", &src[start..i]),
                    "write a number such as 14, 0.5 or 1e-3",
                )
            })?;
            out.push((Tok::Num(n), (start, i)));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), (start, i)));
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += 1;
            }
            if i >= b.len() {
                return Err(ExprError::new(
                    (start, b.len()),
                    "this string is not closed",
                    format!("end it with {}", c as char),
                ));
            }
            out.push((Tok::Str(src[start + 1..i].to_string()), (start, i + 1)));
            i += 1;
        } else if let Some(p) = PUNCT.iter().find(|p| src[i..].starts_with(**p)) {
            i += p.len();
            out.push((Tok::Punct(p), (start, i)));
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            let fix = match ch {
                '&' => "write `and`",
                '|' => "write `or`",
                '!' => "write `not`",
                '=' => "compare with `==`",
                _ => "remove it; see docs/strategies.md for the operators",
            };
            return Err(ExprError::new(
                (i, i + ch.len_utf8()),
                format!("`{ch}` is not part of the language"),
                fix,
            ));
        }
    }
    out.push((Tok::End, (b.len(), b.len())));
    Ok(out)
}

/// Parse one expression.
///
/// # Errors
/// A syntax error, with the span of the offending token.
pub fn parse(src: &str) -> Result<Ast, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0 };
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(ExprError::new(
            p.span(),
            format!("unexpected {} after a complete expression", describe(t)),
            "join conditions with `and` / `or`, or remove what follows",
        )),
    }
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn span(&self) -> Span {
        self.toks[self.at].1
    }

    fn next(&mut self) -> (Tok, Span) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(q) if q == w)
    }

    fn expect(&mut self, p: &'static str, open: Span, what: &str) -> Result<Span, ExprError> {
        if self.is_punct(p) {
            return Ok(self.next().1);
        }
        Err(ExprError::new(
            self.span(),
            format!("expected `{p}` {what}, found {}", describe(self.peek())),
            format!("add `{p}` to match the one at column {}", open.0 + 1),
        ))
    }

    fn binary(op: BinOp, l: Ast, r: Ast) -> Ast {
        let span = (l.span.0, r.span.1);
        Ast {
            kind: AstKind::Binary(op, Box::new(l), Box::new(r)),
            span,
        }
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.and()?;
        while self.is_word("or") {
            self.next();
            let r = self.and()?;
            l = Self::binary(BinOp::Or, l, r);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.not()?;
        while self.is_word("and") {
            self.next();
            let r = self.not()?;
            l = Self::binary(BinOp::And, l, r);
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.is_word("not") {
            let (_, s) = self.next();
            let e = self.not()?;
            let span = (s.0, e.span.1);
            return Ok(Ast {
                kind: AstKind::Unary(UnOp::Not, Box::new(e)),
                span,
            });
        }
        self.compare()
    }

    fn compare_op(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Punct("<") => BinOp::Lt,
            Tok::Punct("<=") => BinOp::Le,
            Tok::Punct(">") => BinOp::Gt,
            Tok::Punct(">=") => BinOp::Ge,
            Tok::Punct("==") => BinOp::Eq,
            Tok::Punct("!=") => BinOp::Ne,
            _ => return None,
        })
    }

    fn compare(&mut self) -> Result<Ast, ExprError> {
        let l = self.sum()?;
        let Some(op) = self.compare_op() else {
            return Ok(l);
        };
        self.next();
        let r = self.sum()?;
        if self.compare_op().is_some() {
            return Err(ExprError::new(
                self.span(),
                "comparisons do not chain",
                "write `a < b and b < c`",
            ));
        }
        Ok(Self::binary(op, l, r))
    }

    fn sum(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("+") => BinOp::Add,
                Tok::Punct("-") => BinOp::Sub,
                _ => return Ok(l),
            };
            self.next();
            let r = self.product()?;
            l = Self::binary(op, l, r);
        }
    }

    fn product(&mut self) -> Result<Ast, ExprError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Punct("*") => BinOp::Mul,
                Tok::Punct("/") => BinOp::Div,
                _ => return Ok(l),
            };
            self.next();
            let r = self.unary()?;
            l = Self::binary(op, l, r);
        }
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.is_punct("-") {
            let (_, s) = self.next();
            let e = self.unary()?;
            let span = (s.0, e.span.1);
            return Ok(Ast {
                kind: AstKind::Unary(UnOp::Neg, Box::new(e)),
                span,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Ast, ExprError> {
        let mut e = self.primary()?;
        while self.is_punct("[") {
            let (_, open) = self.next();
            let n = self.or()?;
            let close = self.expect("]", open, "to end the index")?;
            let span = (e.span.0, close.1);
            e = Ast {
                kind: AstKind::Index(Box::new(e), Box::new(n)),
                span,
            };
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (t, span) = self.next();
        let kind = match t {
            Tok::Num(n) => AstKind::Num(n),
            Tok::Str(s) => AstKind::Str(s),
            Tok::Ident(w) if w == "true" || w == "false" => AstKind::Bool(w == "true"),
            Tok::Ident(w) if ["and", "or", "not"].contains(&w.as_str()) => {
                return Err(ExprError::new(
                    span,
                    format!("expected a value, found `{w}`"),
                    format!("put a condition before and after `{w}`"),
                ))
            }
            Tok::Ident(name) if self.is_punct("(") => {
                let (_, open) = self.next();
                let mut args = Vec::new();
                if !self.is_punct(")") {
                    loop {
                        args.push(self.or()?);
                        if !self.is_punct(",") {
                            break;
                        }
                        self.next();
                    }
                }
                let close = self.expect(")", open, &format!("to end the arguments of `{name}`"))?;
                return Ok(Ast {
                    kind: AstKind::Call {
                        name,
                        name_span: span,
                        args,
                    },
                    span: (span.0, close.1),
                });
            }
            Tok::Ident(name) => AstKind::Name(name),
            Tok::Punct("(") => {
                let e = self.or()?;
                let close = self.expect(")", span, "to close the parenthesis")?;
                return Ok(Ast {
                    kind: e.kind,
                    span: (span.0, close.1),
                });
            }
            t => {
                return Err(ExprError::new(
                    span,
                    format!("expected a value, found {}", describe(&t)),
                    "write a number, a series such as `close`, or a function call such as `ema(close, 10)`",
                ))
            }
        };
        Ok(Ast { kind, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(a: &Ast) -> String {
        match &a.kind {
            AstKind::Num(n) => format!("{n}"),
            AstKind::Str(s) => format!("{s:?}"),
            AstKind::Bool(b) => format!("{b}"),
            AstKind::Name(n) => n.clone(),
            AstKind::Call { name, args, .. } => {
                let a: Vec<String> = args.iter().map(show).collect();
                format!("{name}({})", a.join(","))
            }
            AstKind::Index(x, n) => format!("{}[{}]", show(x), show(n)),
            AstKind::Unary(UnOp::Neg, x) => format!("(-{})", show(x)),
            AstKind::Unary(UnOp::Not, x) => format!("(not {})", show(x)),
            AstKind::Binary(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let p = |s: &str| show(&parse(s).unwrap());
        assert_eq!(p("1 + 2 * 3 - 4"), "((1 + (2 * 3)) - 4)");
        assert_eq!(p("a or b and not c"), "(a or (b and (not c)))");
        assert_eq!(p("-x[2] < 3 / y"), "((-x[2]) < (3 / y))");
        assert_eq!(
            p("sma(close, \"50d\") > close[1]"),
            "(sma(close,\"50d\") > close[1])"
        );
        assert_eq!(p("(a + b) * c"), "((a + b) * c)");
        assert_eq!(p("f()"), "f()");
        assert_eq!(p("1_000 + 2.5e-1"), "(1000 + 0.25)");
    }

    #[test]
    fn spans_cover_their_text() {
        let src = "cross_above(ema(close, 10), ema(close, 30))";
        let a = parse(src).unwrap();
        assert_eq!(a.span, (0, src.len()));
        let AstKind::Call {
            args, name_span, ..
        } = &a.kind
        else {
            panic!()
        };
        assert_eq!(&src[name_span.0..name_span.1], "cross_above");
        assert_eq!(&src[args[1].span.0..args[1].span.1], "ema(close, 30)");
    }

    #[test]
    fn syntax_errors_point_at_the_fault() {
        let e = parse("ema(close, 10) > ").unwrap_err();
        assert_eq!(e.span, (17, 17));
        assert!(e.message.contains("expected a value"), "{e:?}");
        let e = parse("ema(close, 10").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{e:?}");
        assert!(e.fix.contains("column 4"), "{e:?}");
        let e = parse("a < b < c").unwrap_err();
        assert!(e.message.contains("do not chain"), "{e:?}");
        let e = parse("a && b").unwrap_err();
        assert_eq!((e.span, e.fix.as_str()), ((2, 3), "write `and`"));
        let e = parse("close 5").unwrap_err();
        assert!(e.message.contains("after a complete expression"), "{e:?}");
        let e = parse("sma(close, \"50d)").unwrap_err();
        assert!(e.message.contains("not closed"), "{e:?}");
    }
}
