//! The lookup cache: answers of a provider by query, kept as the lookup wrote them (JSON), with
//! the time fetched. The store does not read them; `provider` is whatever identifies the
//! answering service (a name, or a name and a configuration's hash).

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{now_ms, on_pool, Result, ResultStore};

/// Queries per cache statement.
const CACHE_CHUNK: usize = 1000;

impl ResultStore {
    /// Cached answers of `provider` to these queries, fetched at or after `fresh_since_ms`.
    pub async fn cached_answers(
        &self,
        provider: &str,
        queries: &[String],
        fresh_since_ms: i64,
    ) -> Result<HashMap<String, String>> {
        let mut found = HashMap::new();
        for chunk in queries.chunks(CACHE_CHUNK) {
            let rows: Vec<(String, String)> = on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(
                    "SELECT query, answer FROM lookup_answers WHERE provider = ",
                );
                qb.push_bind(provider)
                    .push(" AND fetched_ms >= ")
                    .push_bind(fresh_since_ms)
                    .push(" AND query IN (");
                let mut list = qb.separated(", ");
                for q in chunk {
                    list.push_bind(q.as_str());
                }
                qb.push(")");
                qb.build_query_as().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// Caches answers of `provider` (a newer answer replaces an older one).
    pub async fn cache_answers(&self, provider: &str, answers: &[(String, String)]) -> Result<()> {
        let now = now_ms();
        for chunk in answers.chunks(CACHE_CHUNK) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO lookup_answers (provider, query, answer, fetched_ms) ",
                );
                qb.push_values(chunk, |mut b, (query, answer)| {
                    b.push_bind(provider)
                        .push_bind(query.as_str())
                        .push_bind(answer.as_str())
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (provider, query) DO UPDATE SET answer = excluded.answer, \
                     fetched_ms = excluded.fetched_ms",
                );
                qb.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// How many answers of `provider` the cache holds (for tests of providers whose answers
    /// must not be kept).
    pub async fn cached_answer_count(&self, provider: &str) -> Result<u64> {
        let n: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM lookup_answers WHERE provider = $1")
                .bind(provider)
                .fetch_one(pool)
                .await?
        });
        Ok(n as u64)
    }
}
