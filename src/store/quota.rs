//! The daily call quota's ledger, one SQL text for both backends (`$n`
//! placeholders, which SQLite reads as parameters numbered in order).
use crate::store::StoreResult;

/// Gives out `want` more of `portal`'s calls of `day` unless that would
/// pass `max`: the day's calls given out now, or `None` (nothing given).
pub(crate) async fn draw<'c, DB, E>(
    conn: E,
    portal: i64,
    day: i64,
    want: u32,
    max: u32,
) -> StoreResult<Option<u32>>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    if want == 0 || want > max {
        return Ok(None);
    }
    let used: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO daily_call_counts (portal_id, day, used) VALUES ($1, $2, $3)
         ON CONFLICT (portal_id, day) DO UPDATE SET used = daily_call_counts.used + $3
         WHERE daily_call_counts.used + $3 <= $4
         RETURNING used",
    )
    .bind(portal)
    .bind(day)
    .bind(i64::from(want))
    .bind(i64::from(max))
    .fetch_optional(conn)
    .await?;
    Ok(used.map(|(n,)| u32::try_from(n).unwrap_or(max)))
}

/// Forgets the days before `day`.
pub(crate) async fn prune<'c, DB, E>(conn: E, day: i64) -> StoreResult<()>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query("DELETE FROM daily_call_counts WHERE day < $1")
        .bind(day)
        .execute(conn)
        .await?;
    Ok(())
}
