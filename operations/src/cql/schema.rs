//! The `schema.cql` Cassandra writes into a snapshot, split into statements and checked before it is run.
//!
//! Cassandra 4.0+ writes (`SchemaCQLHelper.reCreateStatementsForSchemaCql`), each ending in `;`:
//! `CREATE TYPE IF NOT EXISTS ks.udt (...)` for the user types the table uses, then
//! `CREATE TABLE IF NOT EXISTS ks.t (...) WITH ID = <uuid> AND ...`, then `ALTER TABLE ks.t DROP c USING TIMESTAMP n`
//! (and `ADD` again) for dropped columns, then `CREATE [CUSTOM] INDEX IF NOT EXISTS ... ON ks.t (...)`.
//! Table comments and options are quoted strings that may hold `;`, `--`, `$$` or quotes, so the text is split by
//! a small lexer, never by searching for `;`.

use std::ops::Range;

use uuid::Uuid;

/// Why a schema text cannot be used to recreate the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{what} opened on line {line} is never closed")]
    Unterminated { what: &'static str, line: usize },

    #[error("it holds no CREATE TABLE statement")]
    NoCreateTable,

    #[error("it holds more than one CREATE TABLE statement")]
    SeveralCreateTables,

    #[error("its CREATE TABLE names {found}, not the table being restored")]
    OtherTable { found: String },

    #[error("statement `{statement}` concerns {found}, outside the table being restored")]
    OtherObject { statement: String, found: String },

    #[error(
        "statement `{statement}` is not one a snapshot's schema holds (CREATE TYPE, CREATE TABLE, ALTER TABLE, CREATE INDEX)"
    )]
    Unexpected { statement: String },

    #[error("statement `{statement}` does not name a keyspace-qualified object")]
    Unqualified { statement: String },

    #[error("its table id '{id}' is not a UUID")]
    InvalidId { id: String },
}

/// A snapshot's `schema.cql`, split and checked against the table it is meant to recreate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaCql {
    /// The statements in order, without their `;` and without comments around them.
    pub statements: Vec<String>,
    /// The id in `WITH ID = ...`: the id the table gets back (`None` when the text carries none).
    pub table_id: Option<Uuid>,
}

impl SchemaCql {
    /// Splits `text` and checks that it recreates `keyspace.table` (names as stored: case-sensitive, unquoted)
    /// and touches nothing but that table, its types and its indexes in that keyspace.
    pub fn parse(text: &str, keyspace: &str, table: &str) -> Result<Self, SchemaError> {
        let statements = lex_statements(text)?;
        let mut table_id = None;
        let mut create_tables = 0;
        for statement in &statements {
            let kind = Kind::of(&statement.tokens).ok_or_else(|| SchemaError::Unexpected {
                statement: statement.abbreviated(),
            })?;
            let name =
                kind.object_name(&statement.tokens)
                    .ok_or_else(|| SchemaError::Unqualified {
                        statement: statement.abbreviated(),
                    })?;
            let (found_keyspace, found_object) = name;
            let display = format!("{found_keyspace}.{found_object}");
            match kind {
                Kind::CreateTable => {
                    create_tables += 1;
                    if found_keyspace != keyspace || found_object != table {
                        return Err(SchemaError::OtherTable { found: display });
                    }
                    table_id = find_table_id(&statement.tokens)?;
                }
                Kind::CreateType if found_keyspace != keyspace => {
                    return Err(SchemaError::OtherObject {
                        statement: statement.abbreviated(),
                        found: display,
                    });
                }
                Kind::AlterTable | Kind::CreateIndex
                    if found_keyspace != keyspace || found_object != table =>
                {
                    return Err(SchemaError::OtherObject {
                        statement: statement.abbreviated(),
                        found: display,
                    });
                }
                _ => {}
            }
        }
        match create_tables {
            0 => Err(SchemaError::NoCreateTable),
            1 => Ok(Self {
                statements: statements.into_iter().map(|s| s.text).collect(),
                table_id,
            }),
            _ => Err(SchemaError::SeveralCreateTables),
        }
    }
}

/// Splits CQL text into statements at the `;` outside strings, quoted names and comments. Comments before and
/// after a statement are left out; a statement that is only a comment disappears.
pub fn split_statements(text: &str) -> Result<Vec<String>, SchemaError> {
    Ok(lex_statements(text)?.into_iter().map(|s| s.text).collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword, unquoted name, number or UUID, as written.
    Word(String),
    /// A `"quoted"` name, with `""` unescaped.
    Quoted(String),
    /// A `'string'` or `$$string$$` constant.
    Str,
    Symbol(char),
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(word))
    }

    /// The name this token stands for, as Cassandra stores it: unquoted names fold to lower case.
    fn identifier(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }
}

struct Statement {
    text: String,
    tokens: Vec<Token>,
}

impl Statement {
    fn abbreviated(&self) -> String {
        super::abbreviate(&self.text)
    }
}

fn lex_statements(text: &str) -> Result<Vec<Statement>, SchemaError> {
    let mut statements = Vec::new();
    let mut tokens = Vec::new();
    let mut span: Option<Range<usize>> = None;
    let mut finish = |tokens: &mut Vec<Token>, span: &mut Option<Range<usize>>| {
        if let Some(range) = span.take() {
            statements.push(Statement {
                text: text[range].to_string(),
                tokens: std::mem::take(tokens),
            });
        }
    };
    let mut lexer = Lexer { text, pos: 0 };
    while let Some((token, range)) = lexer.next_token()? {
        if token == Token::Symbol(';') {
            finish(&mut tokens, &mut span);
            continue;
        }
        span = Some(span.map_or(range.clone(), |s| s.start..range.end));
        tokens.push(token);
    }
    finish(&mut tokens, &mut span);
    Ok(statements)
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn line_at(&self, pos: usize) -> usize {
        self.text[..pos].matches('\n').count() + 1
    }

    /// The next token and its byte range, skipping white space and comments.
    fn next_token(&mut self) -> Result<Option<(Token, Range<usize>)>, SchemaError> {
        loop {
            // Copied out of `self`, so `rest` does not hold `self` borrowed while `pos` moves on.
            let text = self.text;
            let rest = &text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Ok(None);
            };
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if rest.starts_with("--") || rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if let Some(body) = rest.strip_prefix("/*") {
                let end = body.find("*/").ok_or(SchemaError::Unterminated {
                    what: "a /* comment",
                    line: self.line_at(start),
                })?;
                self.pos += 2 + end + 2;
            } else if c == '\'' || c == '"' {
                let (content, len) = quoted(rest, c).ok_or(SchemaError::Unterminated {
                    what: if c == '\'' {
                        "a 'string'"
                    } else {
                        "a \"quoted name\""
                    },
                    line: self.line_at(start),
                })?;
                self.pos += len;
                let token = if c == '\'' {
                    Token::Str
                } else {
                    Token::Quoted(content)
                };
                return Ok(Some((token, start..self.pos)));
            } else if let Some(body) = rest.strip_prefix("$$") {
                let end = body.find("$$").ok_or(SchemaError::Unterminated {
                    what: "a $$string$$",
                    line: self.line_at(start),
                })?;
                self.pos += 2 + end + 2;
                return Ok(Some((Token::Str, start..self.pos)));
            } else if c.is_alphanumeric() || c == '_' {
                // Names, keywords, numbers and UUIDs (whose `-` would otherwise split them).
                let len = rest
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '-'))
                    .unwrap_or(rest.len());
                // ... but `--` starts a comment even right after a word.
                let len = rest[..len].find("--").unwrap_or(len);
                self.pos += len;
                return Ok(Some((
                    Token::Word(rest[..len].to_string()),
                    start..self.pos,
                )));
            } else {
                self.pos += c.len_utf8();
                return Ok(Some((Token::Symbol(c), start..self.pos)));
            }
        }
    }
}

/// The content of a quoted string or name starting at `text[0] == quote`, with doubled quotes unescaped, and the
/// length of the whole quoted text; `None` when it never closes.
fn quoted(text: &str, quote: char) -> Option<(String, usize)> {
    let mut content = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|&(_, next)| next == quote) {
                chars.next();
                content.push(quote);
            } else {
                return Some((content, i + c.len_utf8()));
            }
        } else {
            content.push(c);
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CreateType,
    CreateTable,
    AlterTable,
    CreateIndex,
}

impl Kind {
    fn of(tokens: &[Token]) -> Option<Self> {
        let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.is_word(w));
        if word(0, "CREATE") && word(1, "TYPE") {
            Some(Kind::CreateType)
        } else if word(0, "CREATE") && (word(1, "TABLE") || word(1, "COLUMNFAMILY")) {
            Some(Kind::CreateTable)
        } else if word(0, "ALTER") && (word(1, "TABLE") || word(1, "COLUMNFAMILY")) {
            Some(Kind::AlterTable)
        } else if word(0, "CREATE") && (word(1, "INDEX") || (word(1, "CUSTOM") && word(2, "INDEX")))
        {
            Some(Kind::CreateIndex)
        } else {
            None
        }
    }

    /// The keyspace and name of the object the statement creates or alters (for an index: its table).
    fn object_name(self, tokens: &[Token]) -> Option<(String, String)> {
        let at = match self {
            Kind::CreateIndex => tokens.iter().position(|t| t.is_word("ON"))? + 1,
            Kind::CreateType | Kind::CreateTable | Kind::AlterTable => {
                let after_keyword = 2;
                let if_not_exists = tokens.get(after_keyword).is_some_and(|t| t.is_word("IF"))
                    && tokens
                        .get(after_keyword + 1)
                        .is_some_and(|t| t.is_word("NOT"))
                    && tokens
                        .get(after_keyword + 2)
                        .is_some_and(|t| t.is_word("EXISTS"));
                let if_exists = tokens.get(after_keyword).is_some_and(|t| t.is_word("IF"))
                    && tokens
                        .get(after_keyword + 1)
                        .is_some_and(|t| t.is_word("EXISTS"));
                after_keyword
                    + if if_not_exists {
                        3
                    } else if if_exists {
                        2
                    } else {
                        0
                    }
            }
        };
        let keyspace = tokens.get(at)?.identifier()?;
        if tokens.get(at + 1) != Some(&Token::Symbol('.')) {
            return None;
        }
        let object = tokens.get(at + 2)?.identifier()?;
        Some((keyspace, object))
    }
}

/// The UUID after `WITH ID =` (or `AND ID =`) in a CREATE TABLE.
fn find_table_id(tokens: &[Token]) -> Result<Option<Uuid>, SchemaError> {
    for window in tokens.windows(4) {
        if (window[0].is_word("WITH") || window[0].is_word("AND"))
            && window[1].is_word("ID")
            && window[2] == Token::Symbol('=')
        {
            let Token::Word(id) = &window[3] else {
                return Err(SchemaError::InvalidId {
                    id: "(not a word)".into(),
                });
            };
            return Uuid::parse_str(id)
                .map(Some)
                .map_err(|_| SchemaError::InvalidId { id: id.clone() });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Cassandra 5.0.8 wrote into a snapshot of a table with a user type, a dropped column, a legacy
    /// secondary index and an SAI index, and a comment holding `''`, `$$`, `--` and `;`.
    const CASSANDRA_50: &str = include_str!("testdata/cassandra-5.0-udt-index.cql");

    #[test]
    fn splits_what_cassandra_5_writes() {
        let statements = split_statements(CASSANDRA_50).unwrap();
        assert_eq!(statements.len(), 5, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE TYPE IF NOT EXISTS cql_schema_probe.\"Addr\" ("));
        assert!(statements[0].ends_with(')'));
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS cql_schema_probe.t ("));
        assert!(statements[1].contains("AND comment = 'it''s a $$ -- test; '\n"));
        assert!(statements[1].ends_with("AND speculative_retry = '99p'"));
        assert_eq!(
            statements[2],
            "ALTER TABLE cql_schema_probe.t DROP gone USING TIMESTAMP 1795893137305000"
        );
        assert_eq!(
            statements[3],
            "CREATE INDEX IF NOT EXISTS t_v ON cql_schema_probe.t (v)"
        );
        assert_eq!(
            statements[4],
            "CREATE CUSTOM INDEX IF NOT EXISTS t_sai ON cql_schema_probe.t (\"Mixed\") USING 'StorageAttachedIndex'"
        );
    }

    #[test]
    fn parses_what_cassandra_5_writes() {
        let schema = SchemaCql::parse(CASSANDRA_50, "cql_schema_probe", "t").unwrap();
        assert_eq!(schema.statements.len(), 5);
        assert_eq!(
            schema.table_id,
            Some(Uuid::parse_str("9fb84470-eb5f-11f1-b480-f1273ae1e81e").unwrap())
        );
    }

    #[test]
    fn comments_are_left_out_and_their_semicolons_ignored() {
        let text = "-- a comment; with a semicolon\n\
                    CREATE TABLE ks.t (id int PRIMARY KEY) -- trailing; comment\n\
                    WITH ID = 00000000-0000-0000-0000-000000000001;\n\
                    /* block; comment\n spanning lines */\n\
                    // slash comment;\n\
                    CREATE INDEX i ON ks.t (id);-- end";
        let statements = split_statements(text).unwrap();
        assert_eq!(
            statements,
            [
                "CREATE TABLE ks.t (id int PRIMARY KEY) -- trailing; comment\n\
                 WITH ID = 00000000-0000-0000-0000-000000000001",
                "CREATE INDEX i ON ks.t (id)",
            ]
        );
        // The comment inside the first statement does not hide its id.
        let schema = SchemaCql::parse(text, "ks", "t").unwrap();
        assert_eq!(schema.table_id, Some(Uuid::from_u128(1)));
    }

    #[test]
    fn strings_and_quoted_names_keep_their_semicolons_and_comment_marks() {
        let text = "CREATE TABLE \"K;s\".\"T\"\"x\" (id int PRIMARY KEY) WITH comment = $$a;'b'--c/*d$$ \
                    AND ID = 00000000-0000-0000-0000-000000000002;  \n\n";
        let statements = split_statements(text).unwrap();
        assert_eq!(statements.len(), 1);
        assert!(statements[0].ends_with("000000000002"));
        let schema = SchemaCql::parse(text, "K;s", "T\"x").unwrap();
        assert_eq!(schema.table_id, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn the_last_statement_needs_no_semicolon() {
        assert_eq!(
            split_statements("CREATE TYPE ks.u (a int);\nCREATE TABLE ks.t (id int PRIMARY KEY)\n")
                .unwrap(),
            [
                "CREATE TYPE ks.u (a int)",
                "CREATE TABLE ks.t (id int PRIMARY KEY)"
            ]
        );
        assert!(split_statements(" ;; -- nothing\n").unwrap().is_empty());
    }

    #[test]
    fn unterminated_strings_names_and_comments_are_refused_with_their_line() {
        let cases = [
            (
                "CREATE TABLE ks.t (id int) WITH comment = 'open",
                "a 'string'",
                1,
            ),
            ("\nCREATE TABLE ks.\"t (id int)", "a \"quoted name\"", 2),
            ("CREATE TABLE ks.t (id int);\n\n/* open", "a /* comment", 3),
            (
                "CREATE TABLE ks.t (id int) WITH comment = $$x",
                "a $$string$$",
                1,
            ),
        ];
        for (text, what, line) in cases {
            assert_eq!(
                split_statements(text).unwrap_err(),
                SchemaError::Unterminated { what, line },
                "{text}"
            );
        }
    }

    #[test]
    fn unquoted_names_fold_to_lower_case_and_quoted_ones_do_not() {
        let text = "CREATE TABLE IF NOT EXISTS Shop.\"Orders\" (id int PRIMARY KEY) WITH ID = 00000000-0000-0000-0000-000000000003";
        assert!(SchemaCql::parse(text, "shop", "Orders").is_ok());
        assert_eq!(
            SchemaCql::parse(text, "shop", "orders").unwrap_err(),
            SchemaError::OtherTable {
                found: "shop.Orders".into()
            }
        );
    }

    #[test]
    fn a_schema_for_another_table_or_keyspace_is_refused() {
        let err = SchemaCql::parse(CASSANDRA_50, "cql_schema_probe", "u").unwrap_err();
        assert_eq!(
            err,
            SchemaError::OtherTable {
                found: "cql_schema_probe.t".into()
            }
        );
        let err = SchemaCql::parse(CASSANDRA_50, "elsewhere", "t").unwrap_err();
        assert!(
            matches!(&err, SchemaError::OtherObject { found, .. } if found == "cql_schema_probe.Addr"),
            "{err:?}"
        );
        let index_elsewhere =
            "CREATE TABLE ks.t (id int PRIMARY KEY); CREATE INDEX i ON ks.other (v)";
        let err = SchemaCql::parse(index_elsewhere, "ks", "t").unwrap_err();
        assert!(
            matches!(&err, SchemaError::OtherObject { found, .. } if found == "ks.other"),
            "{err:?}"
        );
    }

    #[test]
    fn statements_a_snapshot_never_holds_are_refused() {
        let text = "CREATE TABLE ks.t (id int PRIMARY KEY); DROP KEYSPACE ks";
        let err = SchemaCql::parse(text, "ks", "t").unwrap_err();
        assert_eq!(
            err,
            SchemaError::Unexpected {
                statement: "DROP KEYSPACE ks".into()
            }
        );
        assert!(err.to_string().contains("DROP KEYSPACE ks"), "{err}");
    }

    #[test]
    fn a_schema_without_exactly_one_create_table_is_refused() {
        assert_eq!(
            SchemaCql::parse("CREATE TYPE ks.u (a int)", "ks", "t").unwrap_err(),
            SchemaError::NoCreateTable
        );
        assert_eq!(
            SchemaCql::parse("", "ks", "t").unwrap_err(),
            SchemaError::NoCreateTable
        );
        assert_eq!(
            SchemaCql::parse(
                "CREATE TABLE ks.t (a int); CREATE TABLE ks.t (a int)",
                "ks",
                "t"
            )
            .unwrap_err(),
            SchemaError::SeveralCreateTables
        );
    }

    #[test]
    fn unqualified_names_and_bad_ids_are_refused() {
        assert!(matches!(
            SchemaCql::parse("CREATE TABLE t (id int PRIMARY KEY)", "ks", "t").unwrap_err(),
            SchemaError::Unqualified { .. }
        ));
        assert_eq!(
            SchemaCql::parse(
                "CREATE TABLE ks.t (id int PRIMARY KEY) WITH ID = 12-34",
                "ks",
                "t"
            )
            .unwrap_err(),
            SchemaError::InvalidId { id: "12-34".into() }
        );
    }

    #[test]
    fn a_table_without_an_id_parses_with_none() {
        let schema = SchemaCql::parse(
            "CREATE TABLE ks.t (id int PRIMARY KEY) WITH comment = 'ID = x'",
            "ks",
            "t",
        )
        .unwrap();
        assert_eq!(schema.table_id, None);
    }
}
