//! The first step of etcd's gateway decoding, with the same error texts: Go's `json.Decoder`
//! reads one JSON value from the body (anything after it is ignored), and jsonpb then wants an
//! object. Clients and scripts match on these messages, so the syntax errors are worded as Go's
//! scanner words them ("invalid character 'b' looking for beginning of object key string").
#![forbid(unsafe_code)]

/// What the body's first JSON value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Top {
    /// No value at all (an empty body): the default request.
    Empty,
    /// `null`: the default request.
    Null,
    /// An object spanning `..end` of the body.
    Object(usize),
}

/// Go's quoting of a character in a scanner error.
fn quote(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        b'\n' => "'\\n'".to_string(),
        b'\r' => "'\\r'".to_string(),
        b'\t' => "'\\t'".to_string(),
        0x20..=0x7e => format!("'{}'", c as char),
        c if c < 0x80 => format!("'\\x{c:02x}'"),
        _ => "'\\ufffd'".to_string(),
    }
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote(c))
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

const EOF: &str = "unexpected EOF";
/// Deepest nesting accepted (Go's encoding/json limit).
pub const MAX_NESTING_DEPTH: usize = 10_000;

impl Scan<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// After `{` or `,` in an object: a key string and its colon.
    fn object_key(&mut self) -> Result<(), String> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string()?,
            Some(c) => return Err(invalid(c, "looking for beginning of object key string")),
            None => return Err(EOF.into()),
        }
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.i += 1;
                Ok(())
            }
            Some(c) => Err(invalid(c, "after object key")),
            None => Err(EOF.into()),
        }
    }

    /// One whole value. Iterative (an explicit stack of open containers), so a deeply nested
    /// body cannot exhaust the thread's stack; nesting is limited as Go's is.
    fn value(&mut self, context: &str) -> Result<(), String> {
        let mut open: Vec<u8> = Vec::new();
        let mut context = context;
        loop {
            // The start of a value.
            self.skip_ws();
            let c = self.peek().ok_or(EOF)?;
            let mut entered = false;
            match c {
                b'{' | b'[' => {
                    if open.len() >= MAX_NESTING_DEPTH {
                        return Err(invalid(c, "exceeded max depth"));
                    }
                    self.i += 1;
                    self.skip_ws();
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        open.push(c);
                        if c == b'{' {
                            self.object_key()?;
                        }
                        entered = true;
                    }
                }
                b'"' => self.string()?,
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                c => return Err(invalid(c, context)),
            }
            context = "looking for beginning of value";
            if entered {
                continue;
            }
            // A value ended: close every container that ends here.
            loop {
                let Some(&top) = open.last() else { return Ok(()) };
                self.skip_ws();
                let next = self.peek().ok_or(EOF)?;
                match (top, next) {
                    (_, b',') => {
                        self.i += 1;
                        if top == b'{' {
                            self.object_key()?;
                        }
                        break;
                    }
                    (b'{', b'}') | (b'[', b']') => {
                        self.i += 1;
                        open.pop();
                    }
                    (b'{', c) => return Err(invalid(c, "after object key:value pair")),
                    (_, c) => return Err(invalid(c, "after array element")),
                }
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.i += 1;
        loop {
            let c = self.peek().ok_or(EOF)?;
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let e = self.peek().ok_or(EOF)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = self.peek().ok_or(EOF)?;
                                if !h.is_ascii_hexdigit() {
                                    return Err(invalid(h, "in \\u hexadecimal character escape"));
                                }
                                self.i += 1;
                            }
                        }
                        e => return Err(invalid(e, "in string escape code")),
                    }
                }
                c if c < 0x20 => return Err(invalid(c, "in string literal")),
                _ => {}
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.i += 1;
            match self.peek() {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "in numeric literal")),
                None => return Err(EOF.into()),
            }
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else {
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            match self.peek() {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "after decimal point in numeric literal")),
                None => return Err(EOF.into()),
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            match self.peek() {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "in exponent of numeric literal")),
                None => return Err(EOF.into()),
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        for (k, &want) in word.iter().enumerate() {
            let c = self.peek().ok_or(EOF)?;
            if c != want {
                let name = String::from_utf8_lossy(word);
                return Err(invalid(c, &format!("in literal {name} (expecting {})", quote(want))));
            }
            self.i += 1;
            let _ = k;
        }
        Ok(())
    }
}

/// Reads the first JSON value of `body` as etcd's gateway does: a syntax error, or a value that
/// is not an object (nor `null`), is an error with Go's wording.
pub fn first_value(body: &[u8]) -> Result<Top, String> {
    let mut s = Scan { b: body, i: 0 };
    s.skip_ws();
    let Some(c) = s.peek() else { return Ok(Top::Empty) };
    let start = s.i;
    s.value("looking for beginning of value")?;
    let kind = match c {
        b'{' => return Ok(Top::Object(s.i)),
        b'n' => return Ok(Top::Null),
        b'[' => "array",
        b'"' => "string",
        b't' | b'f' => "bool",
        _ => "number",
    };
    debug_assert!(s.i > start);
    Err(format!("json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_wording_for_syntax_errors() {
        let e = |b: &str| first_value(b.as_bytes()).unwrap_err();
        assert_eq!(e("{bad"), "invalid character 'b' looking for beginning of object key string");
        assert_eq!(e("abc"), "invalid character 'a' looking for beginning of value");
        assert_eq!(e("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(e("{\"a\":1 \"b\"}"), "invalid character '\"' after object key:value pair");
        assert_eq!(e("{\"a\":[1 2]}"), "invalid character '2' after array element");
        assert_eq!(e("{\"a\":tru}"), "invalid character '}' in literal true (expecting 'e')");
        assert_eq!(e("{\"a\":"), "unexpected EOF");
        assert_eq!(
            e("[1]"),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
        );
        assert_eq!(
            e("7"),
            "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"
        );
        assert_eq!(
            e("{'a':1}"),
            "invalid character '\\'' looking for beginning of object key string"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = "[".repeat(200_000);
        assert_eq!(
            first_value(format!("{{\"a\":{deep}").as_bytes()).unwrap_err(),
            "invalid character '[' exceeded max depth"
        );
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(first_value(ok.as_bytes()), Ok(Top::Object(_))));
    }

    #[test]
    fn objects_null_and_trailing_data() {
        assert_eq!(first_value(b"  "), Ok(Top::Empty));
        assert_eq!(first_value(b"null"), Ok(Top::Null));
        assert_eq!(first_value(b"{\"k\":\"x\"} trailing"), Ok(Top::Object(9)));
        assert_eq!(
            first_value(b"{\"k\":[1,{\"z\":-1.5e3}],\"s\":\"\\u00e9\\n\"}"),
            Ok(Top::Object(37))
        );
    }
}
