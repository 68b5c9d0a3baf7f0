//! Custom object names, one SQL text for both backends (`$n` placeholders,
//! which SQLite reads as parameters numbered in order).
use crate::domain::ObjectType;
use crate::store::{decode_object_type, StoreResult};

/// The portal's custom object names, by type.
pub(crate) async fn object_names<'c, DB, E>(
    conn: E,
    portal: i64,
) -> StoreResult<Vec<(ObjectType, String)>>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    (String, String): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT object_type, name FROM custom_object_names WHERE portal_id = $1")
            .bind(portal)
            .fetch_all(conn)
            .await?;
    let mut names = rows
        .into_iter()
        .map(|(t, name)| Ok((decode_object_type(&t)?, name)))
        .collect::<StoreResult<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Gives `object_type` the name `name`, or takes its name (`None`).
pub(crate) async fn set_object_name<'c, DB, E>(
    conn: E,
    portal: i64,
    object_type: ObjectType,
    name: Option<&str>,
) -> StoreResult<()>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let query = match name {
        Some(name) => sqlx::query(
            "INSERT INTO custom_object_names (portal_id, object_type, name) VALUES ($1, $2, $3)
             ON CONFLICT (portal_id, object_type) DO UPDATE SET name = excluded.name",
        )
        .bind(portal)
        .bind(object_type.to_string())
        .bind(name.to_string()),
        None => {
            sqlx::query("DELETE FROM custom_object_names WHERE portal_id = $1 AND object_type = $2")
                .bind(portal)
                .bind(object_type.to_string())
        }
    };
    query.execute(conn).await?;
    Ok(())
}
