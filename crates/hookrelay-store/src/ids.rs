//! The integer ids that cross the store boundary, each a type of its own so an app id, a log
//! position and an epoch cannot be mixed up. They read and write as `BIGINT`/`INTEGER` in both
//! databases and as plain numbers in JSON.

/// Declares an `i64` newtype with its `Display`, serde and SQL conversions.
macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }

        impl tokio_postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            tokio_postgres::types::accepts!(INT8);
            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                i64::from_sql(ty, raw).map($name)
            }

            tokio_postgres::types::accepts!(INT8);
        }
    };
}

integer_id!(
    /// An app's numeric id (Stream's `app.id`).
    AppId
);

integer_id!(
    /// A position in the event log; strictly increasing, never reused.
    Seq
);

integer_id!(
    /// A hook's delivery epoch: bumped when its cursor is rewound or its lease changes hands,
    /// so progress recorded under an older epoch is refused (see [`crate::Cursor`]).
    Epoch
);

impl Seq {
    pub const MAX: Seq = Seq(i64::MAX);

    pub fn saturating_add(self, n: i64) -> Seq {
        Seq(self.0.saturating_add(n))
    }
}

/// Positions `n` after or before: windows of the log, the position before a rewind target.
impl std::ops::Add<i64> for Seq {
    type Output = Seq;
    fn add(self, n: i64) -> Seq {
        Seq(self.0 + n)
    }
}

impl std::ops::Sub<i64> for Seq {
    type Output = Seq;
    fn sub(self, n: i64) -> Seq {
        Seq(self.0 - n)
    }
}
