//! How a statement is sent: prepared once per connection and cached, or unnamed.
//!
//! With `statement_cache` on (the default), each statement text is prepared once per pooled
//! connection and executed by name: the server parses and plans it once. Behind PgBouncer in
//! transaction or statement mode a named statement prepared on one server connection may be
//! executed on another ("prepared statement "s13" does not exist"), so with the cache off every
//! statement is sent *unnamed*: parse, bind and execute in one message (tokio-postgres'
//! `query_typed`), which survives any pooler and costs no extra round trip. An unnamed
//! statement needs each parameter's type up front, so parameters are [`Param`]s: values that
//! know the PostgreSQL type they are sent as. Both paths declare the same types, so the whole
//! test suite checks the declarations, not only the pooler runs.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, StatementCache, Transaction};
use futures_util::future::{maybe_done, Either, MaybeDone};
use futures_util::{pin_mut, FutureExt, TryStreamExt};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, RowStream, Statement};

use crate::codec::{JsonParam, JsonTextParam};
use crate::error::{ErrorKind, Result, StoreError};

/// A statement parameter and the PostgreSQL type it is sent as.
pub trait Param: Sync {
    fn pg_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

/// A Rust type that is always sent as one PostgreSQL type.
pub trait Typed: ToSql + Sync {
    const TYPE: Type;
}

/// A type that can be an array element, and the PostgreSQL array type of such arrays.
pub trait Element: Typed {
    const ARRAY: Type;
}

impl<T: Typed> Param for T {
    fn pg_type(&self) -> Type {
        T::TYPE
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
}

macro_rules! typed {
    ($($rust:ty => $pg:ident),* $(,)?) => {
        $(impl Typed for $rust { const TYPE: Type = Type::$pg; })*
    };
}

macro_rules! element {
    ($($rust:ty => $pg:ident / $array:ident),* $(,)?) => {
        $(
            impl Typed for $rust { const TYPE: Type = Type::$pg; }
            impl Element for $rust { const ARRAY: Type = Type::$array; }
        )*
    };
}

element!(
    bool => BOOL / BOOL_ARRAY,
    i16 => INT2 / INT2_ARRAY,
    i32 => INT4 / INT4_ARRAY,
    i64 => INT8 / INT8_ARRAY,
    f32 => FLOAT4 / FLOAT4_ARRAY,
    f64 => FLOAT8 / FLOAT8_ARRAY,
    &str => TEXT / TEXT_ARRAY,
    String => TEXT / TEXT_ARRAY,
    JsonParam<'_> => JSONB / JSONB_ARRAY,
    JsonTextParam<'_> => JSON / JSON_ARRAY,
);

// Byte strings are `bytea` (not arrays of a one-byte type).
typed!(&[u8] => BYTEA, Vec<u8> => BYTEA);

impl Element for &[u8] {
    const ARRAY: Type = Type::BYTEA_ARRAY;
}

impl Element for Vec<u8> {
    const ARRAY: Type = Type::BYTEA_ARRAY;
}

/// NULL is sent with the type of the value it stands for.
impl<T: Typed> Typed for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: Element> Element for Option<T> {
    const ARRAY: Type = T::ARRAY;
}

impl<T: Element> Typed for Vec<T> {
    const TYPE: Type = T::ARRAY;
}

impl<T: Element> Typed for &[T] {
    const TYPE: Type = T::ARRAY;
}

/// A parameter whose type is known only at run time (an extension's type, such as pgvector's
/// `vector`, has a different OID in every database).
pub struct WithType<T>(pub T, pub Type);

impl<T: ToSql + Sync> Param for WithType<T> {
    fn pg_type(&self) -> Type {
        self.1.clone()
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        &self.0
    }
}

/// Where statements run: a pooled connection, or a transaction open on one. Without a
/// statement cache (a bare tokio-postgres client) statements are always sent unnamed.
#[derive(Clone, Copy)]
pub struct On<'a> {
    client: &'a Client,
    cache: Option<&'a StatementCache>,
}

impl<'a> From<&'a ClientWrapper> for On<'a> {
    fn from(conn: &'a ClientWrapper) -> Self {
        On {
            client: conn,
            cache: Some(&conn.statement_cache),
        }
    }
}

impl<'a> From<&'a Client> for On<'a> {
    fn from(client: &'a Client) -> Self {
        On {
            client,
            cache: None,
        }
    }
}

impl<'a, 'c> From<&'a tokio_postgres::Transaction<'c>> for On<'a> {
    fn from(tx: &'a tokio_postgres::Transaction<'c>) -> Self {
        On {
            client: tx.client(),
            cache: None,
        }
    }
}

impl<'a> From<&'a deadpool_postgres::Object> for On<'a> {
    fn from(conn: &'a deadpool_postgres::Object) -> Self {
        On::from(&**conn)
    }
}

impl<'a, 'c> From<&'a Transaction<'c>> for On<'a> {
    fn from(tx: &'a Transaction<'c>) -> Self {
        On {
            client: tx.client(),
            cache: Some(&tx.statement_cache),
        }
    }
}

impl<'a> On<'a> {
    /// A pipeline step that sends `text` (no parameters, no rows: BEGIN, COMMIT) by the simple
    /// query protocol.
    pub fn simple(self, text: &'static str) -> Step<'a> {
        Box::pin(async move {
            self.client.batch_execute(text).await?;
            Ok(Vec::new())
        })
    }
}

/// One statement of a pipeline: sends its request on its first poll.
pub type Step<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>>> + Send + 'a>>;

/// A statement ready to join a pipeline: prepared beforehand (cached mode; a cache hit after
/// the first use on a connection), or to be sent unnamed with its parameter types.
pub enum Ready<'s> {
    Prepared(Statement),
    Unnamed(&'s str),
}

impl<'s> Ready<'s> {
    /// A step running this statement with `params` (of the types it was made ready for).
    pub fn step<'a>(&'a self, on: On<'a>, params: Vec<&'a dyn Param>) -> Step<'a>
    where
        's: 'a,
    {
        Box::pin(async move {
            Ok(match self {
                Ready::Prepared(stmt) => {
                    let values: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|p| p.as_sql()).collect();
                    on.client.query(stmt, &values).await?
                }
                Ready::Unnamed(sql) => {
                    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                        params.iter().map(|p| (p.as_sql(), p.pg_type())).collect();
                    on.client.query_typed(sql, &typed).await?
                }
            })
        })
    }
}

/// Runs `steps` to completion, polling them always in index order. tokio-postgres sends a
/// request when its future is first polled, so this is what puts a pipeline's statements on
/// the wire in order (BEGIN first, COMMIT last) in one round trip, however many there are.
pub async fn in_order<F: Future + Unpin>(steps: Vec<F>) -> Vec<F::Output> {
    let mut slots: Vec<MaybeDone<F>> = steps.into_iter().map(maybe_done).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for slot in slots.iter_mut() {
            if Pin::new(slot).poll(cx).is_pending() {
                all_done = false;
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    slots
        .iter_mut()
        .map(|slot| Pin::new(slot).take_output().expect("every step is done"))
        .collect()
}

/// Sends statements as the store is configured to (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    pub cached: bool,
    /// How long to wait for the server's answer before giving the connection up as hung
    /// (`None`: as long as it takes).
    pub response_timeout: Option<Duration>,
}

/// For statements that run rarely (migrations, operations): always unnamed, never cached, no
/// response timeout (a migration or a prune batch may take long).
pub const UNNAMED: Statements = Statements {
    cached: false,
    response_timeout: None,
};

/// `work` within `timeout`; past it, a connection error: the connection is to be given up.
/// A plain function choosing between two futures, so that the result is no larger than `work`
/// (an `async fn` or block would hold `work` twice, and every call's future with it).
pub fn answered<T, F: Future<Output = Result<T>>>(
    timeout: Option<Duration>,
    work: F,
) -> impl Future<Output = Result<T>> {
    let Some(timeout) = timeout else {
        return Either::Left(work);
    };
    // Boxed: a timer is large, and only calls with a response timeout should carry one.
    Either::Right(
        Box::pin(tokio::time::timeout(timeout, work)).map(move |answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::new(
                    ErrorKind::Connection,
                    format!(
                        "no answer from PostgreSQL within response_timeout ({:.1} s): the \
                     connection is given up as hung (the statement may still run if the \
                     server recovers)",
                        timeout.as_secs_f64()
                    ),
                ))
            })
        }),
    )
}

impl<'a> On<'a> {
    /// The statement cache to prepare through, if statements are to be cached here.
    fn cache_for(self, statements: Statements) -> Option<&'a StatementCache> {
        self.cache.filter(|_| statements.cached)
    }
}

impl Statements {
    /// Makes `sql` ready to join a pipeline with parameters of the types of `sample`.
    pub async fn ready<'s>(
        self,
        on: On<'_>,
        sql: &'s str,
        sample: &[&dyn Param],
    ) -> Result<Ready<'s>> {
        answered(self.response_timeout, self.ready_now(on, sql, sample)).await
    }

    async fn ready_now<'s>(
        self,
        on: On<'_>,
        sql: &'s str,
        sample: &[&dyn Param],
    ) -> Result<Ready<'s>> {
        if let Some(cache) = on.cache_for(self) {
            let types: Vec<Type> = sample.iter().map(|p| p.pg_type()).collect();
            Ok(Ready::Prepared(
                cache.prepare_typed(on.client, sql, &types).await?,
            ))
        } else {
            Ok(Ready::Unnamed(sql))
        }
    }

    /// Runs a statement and returns its rows.
    pub async fn query<'a>(
        self,
        on: impl Into<On<'a>>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<Row>> {
        answered(
            self.response_timeout,
            self.query_now(on.into(), sql, params),
        )
        .await
    }

    /// Runs `steps` in order in one round trip (see [`in_order`]), within the response timeout.
    pub async fn pipeline<'a>(self, steps: Vec<Step<'a>>) -> Result<Vec<Result<Vec<Row>>>> {
        answered(self.response_timeout, async { Ok(in_order(steps).await) }).await
    }

    async fn query_now(self, on: On<'_>, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>> {
        if let Some(cache) = on.cache_for(self) {
            let types: Vec<Type> = params.iter().map(|p| p.pg_type()).collect();
            let stmt = cache.prepare_typed(on.client, sql, &types).await?;
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_sql()).collect();
            Ok(on.client.query(&stmt, &values).await?)
        } else {
            let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                params.iter().map(|p| (p.as_sql(), p.pg_type())).collect();
            Ok(on.client.query_typed(sql, &typed).await?)
        }
    }

    /// Runs a statement and hands its rows over as the server sends them (the response
    /// timeout covers the first answer; the rows are then the caller's to wait for).
    pub async fn stream<'a>(
        self,
        on: impl Into<On<'a>>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<RowStream> {
        answered(
            self.response_timeout,
            self.stream_now(on.into(), sql, params),
        )
        .await
    }

    async fn stream_now(self, on: On<'_>, sql: &str, params: &[&dyn Param]) -> Result<RowStream> {
        let values = params.iter().map(|p| p.as_sql());
        if let Some(cache) = on.cache_for(self) {
            let types: Vec<Type> = params.iter().map(|p| p.pg_type()).collect();
            let stmt = cache.prepare_typed(on.client, sql, &types).await?;
            Ok(on.client.query_raw(&stmt, values).await?)
        } else {
            let typed = values.zip(params.iter().map(|p| p.pg_type()));
            Ok(on.client.query_typed_raw(sql, typed).await?)
        }
    }

    /// Runs a statement expected to return at most one row.
    pub async fn query_opt<'a>(
        self,
        on: impl Into<On<'a>>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<Row>> {
        let mut rows = self.query(on, sql, params).await?;
        Ok(if rows.is_empty() {
            None
        } else {
            Some(rows.swap_remove(0))
        })
    }

    /// Runs a statement that always returns one row (an aggregate, a `SELECT` without `FROM`).
    pub async fn query_one<'a>(
        self,
        on: impl Into<On<'a>>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Row> {
        self.query_opt(on, sql, params).await?.ok_or_else(|| {
            crate::error::StoreError::new(
                crate::error::ErrorKind::Database,
                "a statement expected to return one row returned none",
            )
        })
    }

    /// Runs a statement and returns how many rows it changed.
    pub async fn execute<'a>(
        self,
        on: impl Into<On<'a>>,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<u64> {
        answered(
            self.response_timeout,
            self.execute_now(on.into(), sql, params),
        )
        .await
    }

    async fn execute_now(self, on: On<'_>, sql: &str, params: &[&dyn Param]) -> Result<u64> {
        if let Some(cache) = on.cache_for(self) {
            let types: Vec<Type> = params.iter().map(|p| p.pg_type()).collect();
            let stmt = cache.prepare_typed(on.client, sql, &types).await?;
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_sql()).collect();
            Ok(on.client.execute(&stmt, &values).await?)
        } else {
            let typed = params.iter().map(|p| (p.as_sql(), p.pg_type()));
            let stream = on.client.query_typed_raw(sql, typed).await?;
            pin_mut!(stream);
            while stream.try_next().await?.is_some() {}
            Ok(stream.rows_affected().unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn in_order_polls_every_step_first_in_index_order() {
        // join_all switches strategy above 30 futures; this must not.
        let first_polls = Arc::new(Mutex::new(Vec::new()));
        let steps: Vec<Pin<Box<dyn Future<Output = usize> + Send>>> = (0..200usize)
            .map(|i| {
                let first_polls = first_polls.clone();
                Box::pin(async move {
                    first_polls.lock().unwrap().push(i);
                    tokio::task::yield_now().await;
                    i
                }) as Pin<Box<dyn Future<Output = usize> + Send>>
            })
            .collect();
        let outputs = in_order(steps).await;
        assert_eq!(outputs, (0..200).collect::<Vec<_>>());
        assert_eq!(*first_polls.lock().unwrap(), (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn parameters_declare_their_types() {
        let text = "x";
        let none: Option<i64> = None;
        let json = JsonParam(b"{}");
        let params: [&dyn Param; 4] = [&text, &none, &json, &vec!["a"]];
        let types: Vec<Type> = params.iter().map(|p| p.pg_type()).collect();
        assert_eq!(
            types,
            vec![Type::TEXT, Type::INT8, Type::JSONB, Type::TEXT_ARRAY]
        );
        assert_eq!(JsonTextParam(b"{}").pg_type(), Type::JSON);
    }
}
