//! `/api/v1/catalog`: every catalogued error code and every cause id, with their texts.

use dsreg_proto::catalog;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ReadErrors;

/// One catalogued error code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogEntry {
    /// Symbol, e.g. `DSREG_E_DIRECTORY_FAILURE`.
    pub symbol: String,
    /// `0x%08x`.
    pub code: String,
    /// The code as a signed 32-bit decimal (as some logs print it).
    pub signed: i32,
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// What the code means.
    pub text: String,
    /// What to do about it.
    pub resolution: String,
    /// Other codes that mean the same, `0x%08x`.
    pub aliases: Vec<String>,
}

/// One cause id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogCause {
    /// Cause id (stable, snake_case).
    pub id: String,
    /// Phase label.
    pub phase: String,
    /// What the cause means.
    pub text: String,
    /// What to do about it.
    pub resolution: String,
}

/// `/api/v1/catalog`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Catalog {
    /// Every catalogued code.
    pub entries: Vec<CatalogEntry>,
    /// Every cause id.
    pub causes: Vec<CatalogCause>,
}

/// The catalog as the API shows it.
pub fn document() -> Catalog {
    let entries = catalog::entries()
        .iter()
        .map(|e| CatalogEntry {
            symbol: e.symbol.to_string(),
            code: e.hex(),
            signed: e.signed,
            phase: e.phase.label().to_string(),
            cause: e.cause.to_string(),
            text: e.text.to_string(),
            resolution: e.resolution.to_string(),
            aliases: e.aliases.iter().map(|a| dsreg_proto::hex(*a)).collect(),
        })
        .collect();
    let causes = catalog::causes()
        .iter()
        .map(|c| CatalogCause {
            id: c.id.to_string(),
            phase: c.phase.label().to_string(),
            text: c.text.to_string(),
            resolution: c.resolution.to_string(),
        })
        .collect();
    Catalog { entries, causes }
}

/// `GET /api/v1/catalog`.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    responses(
        (status = 200, description = "OK", body = Catalog),
        ReadErrors,
    ),
)]
pub async fn catalog_doc() -> axum::Json<Catalog> {
    axum::Json(document())
}
