//! Identifiers in SQL text. The only identifier taken from callers is the schema name (checked
//! in `config.rs`, quoted here); every value travels as a bind parameter.

/// Quotes an identifier for PostgreSQL (`"` doubled inside).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
