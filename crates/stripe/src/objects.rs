//! The Stripe objects SimplyLoad syncs: one stream per object type, each a
//! few typed columns picked from the object plus the whole object in `_raw`.
//!
//! Typed columns are a convenience for queries; `_raw` is the truth. A field
//! Stripe adds later is in `_raw` the day it appears; a field an API version
//! moved is read from where either shape keeps it (`Pick::Path` lists
//! every place), so a typed column does not go NULL when the pinned version
//! changes.

use simplyload_core::schema::SqlType;

/// The source name of the column holding the whole object as JSON.
pub const RAW: &str = "_raw";
/// The source name of the column holding the API version the object was
/// rendered in (the pinned one, or an event's own when it was kept).
pub const API_VERSION: &str = "_stripe_api_version";

/// How a typed column's value is found in the object.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// The first of these dotted paths that is present and not null
    /// (`parent.subscription_details.subscription`); a path step that is a
    /// list takes its first element (`items.data.0.current_period_start`).
    Path(&'static [&'static str]),
    /// The object's `data.object.object` (events only).
    EventObjectType,
}

/// One typed column.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub sql_type: SqlType,
    /// How Stripe documents it, for `discover`.
    pub stripe_type: &'static str,
    pub pick: Pick,
}

/// One stream: a Stripe object type and how it is listed and kept current.
#[derive(Debug, Clone, Copy)]
pub struct ObjectType {
    /// The stream name (`customers`).
    pub stream: &'static str,
    /// The `object` value Stripe gives it (`customer`).
    pub object: &'static str,
    /// The list endpoint (`/v1/customers`); an object is at `{path}/{id}`.
    pub path: &'static str,
    /// Parameters every listing takes (`status=all` for subscriptions, which
    /// otherwise hides canceled ones).
    pub list_params: &'static [(&'static str, &'static str)],
    /// How changes arrive after the first listing.
    pub changes: Changes,
    /// The permission a restricted key needs (as the Dashboard names it).
    pub permission: &'static str,
    pub fields: &'static [Field],
}

/// How a stream stays current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// Through `/v1/events`, routed by `data.object.object`.
    Events,
    /// Immutable objects: listed again by `created` over the events window.
    Created,
    /// The events feed itself: every event in the window is a row.
    Feed,
}

const fn f(name: &'static str, sql_type: SqlType, stripe_type: &'static str, paths: &'static [&'static str]) -> Field {
    Field { name, sql_type, stripe_type, pick: Pick::Path(paths) }
}

const TEXT: SqlType = SqlType::Text;
const INT: SqlType = SqlType::Int64;
const TIME: SqlType = SqlType::TimestampTz;
const BOOL: SqlType = SqlType::Boolean;
const JSON: SqlType = SqlType::Json;

macro_rules! common {
    ($($rest:expr),* $(,)?) => {
        &[
            f("id", TEXT, "string", &["id"]),
            f("created", TIME, "timestamp", &["created"]),
            f("livemode", BOOL, "boolean", &["livemode"]),
            $($rest,)*
            f("metadata", JSON, "hash", &["metadata"]),
        ]
    };
}

/// Every stream, in the order `discover` lists them.
pub const OBJECTS: &[ObjectType] = &[
    ObjectType {
        stream: "customers",
        object: "customer",
        path: "/v1/customers",
        list_params: &[],
        changes: Changes::Events,
        permission: "Customers",
        fields: common![
            f("email", TEXT, "string", &["email"]),
            f("name", TEXT, "string", &["name"]),
            f("description", TEXT, "string", &["description"]),
            f("currency", TEXT, "string", &["currency"]),
            f("balance", INT, "integer", &["balance", "account_balance"]),
            f("delinquent", BOOL, "boolean", &["delinquent"]),
        ],
    },
    ObjectType {
        stream: "products",
        object: "product",
        path: "/v1/products",
        list_params: &[],
        changes: Changes::Events,
        permission: "Products",
        fields: common![
            f("name", TEXT, "string", &["name"]),
            f("active", BOOL, "boolean", &["active"]),
            f("description", TEXT, "string", &["description"]),
            f("default_price", TEXT, "string", &["default_price"]),
            f("updated", TIME, "timestamp", &["updated"]),
        ],
    },
    ObjectType {
        stream: "prices",
        object: "price",
        path: "/v1/prices",
        list_params: &[],
        changes: Changes::Events,
        permission: "Prices",
        fields: common![
            f("product", TEXT, "string", &["product"]),
            f("active", BOOL, "boolean", &["active"]),
            f("currency", TEXT, "string", &["currency"]),
            f("unit_amount", INT, "integer", &["unit_amount"]),
            f("type", TEXT, "enum", &["type"]),
            f("recurring_interval", TEXT, "enum", &["recurring.interval"]),
            f("nickname", TEXT, "string", &["nickname"]),
        ],
    },
    ObjectType {
        stream: "subscriptions",
        object: "subscription",
        path: "/v1/subscriptions",
        list_params: &[("status", "all")],
        changes: Changes::Events,
        permission: "Subscriptions",
        fields: common![
            f("customer", TEXT, "string", &["customer"]),
            f("status", TEXT, "enum", &["status"]),
            f("currency", TEXT, "string", &["currency"]),
            f(
                "current_period_start",
                TIME,
                "timestamp",
                &["current_period_start", "items.data.0.current_period_start"]
            ),
            f("current_period_end", TIME, "timestamp", &["current_period_end", "items.data.0.current_period_end"]),
            f("cancel_at_period_end", BOOL, "boolean", &["cancel_at_period_end"]),
            f("canceled_at", TIME, "timestamp", &["canceled_at"]),
            f("ended_at", TIME, "timestamp", &["ended_at"]),
        ],
    },
    ObjectType {
        stream: "invoices",
        object: "invoice",
        path: "/v1/invoices",
        list_params: &[],
        changes: Changes::Events,
        permission: "Invoices",
        fields: common![
            f("customer", TEXT, "string", &["customer"]),
            f("subscription", TEXT, "string", &["subscription", "parent.subscription_details.subscription"]),
            f("status", TEXT, "enum", &["status"]),
            f("number", TEXT, "string", &["number"]),
            f("currency", TEXT, "string", &["currency"]),
            f("amount_due", INT, "integer", &["amount_due"]),
            f("amount_paid", INT, "integer", &["amount_paid"]),
            f("amount_remaining", INT, "integer", &["amount_remaining"]),
            f("total", INT, "integer", &["total"]),
            f("due_date", TIME, "timestamp", &["due_date"]),
        ],
    },
    ObjectType {
        stream: "payment_intents",
        object: "payment_intent",
        path: "/v1/payment_intents",
        list_params: &[],
        changes: Changes::Events,
        permission: "PaymentIntents",
        fields: common![
            f("customer", TEXT, "string", &["customer"]),
            f("status", TEXT, "enum", &["status"]),
            f("currency", TEXT, "string", &["currency"]),
            f("amount", INT, "integer", &["amount"]),
            f("amount_received", INT, "integer", &["amount_received"]),
            f("latest_charge", TEXT, "string", &["latest_charge"]),
            f("payment_method", TEXT, "string", &["payment_method"]),
        ],
    },
    ObjectType {
        stream: "charges",
        object: "charge",
        path: "/v1/charges",
        list_params: &[],
        changes: Changes::Events,
        permission: "Charges",
        fields: common![
            f("customer", TEXT, "string", &["customer"]),
            f("payment_intent", TEXT, "string", &["payment_intent"]),
            f("status", TEXT, "enum", &["status"]),
            f("currency", TEXT, "string", &["currency"]),
            f("amount", INT, "integer", &["amount"]),
            f("amount_captured", INT, "integer", &["amount_captured"]),
            f("amount_refunded", INT, "integer", &["amount_refunded"]),
            f("paid", BOOL, "boolean", &["paid"]),
            f("captured", BOOL, "boolean", &["captured"]),
            f("refunded", BOOL, "boolean", &["refunded"]),
            f("balance_transaction", TEXT, "string", &["balance_transaction"]),
        ],
    },
    ObjectType {
        stream: "refunds",
        object: "refund",
        path: "/v1/refunds",
        list_params: &[],
        changes: Changes::Events,
        permission: "Charges",
        fields: common![
            f("charge", TEXT, "string", &["charge"]),
            f("payment_intent", TEXT, "string", &["payment_intent"]),
            f("status", TEXT, "enum", &["status"]),
            f("currency", TEXT, "string", &["currency"]),
            f("amount", INT, "integer", &["amount"]),
            f("reason", TEXT, "enum", &["reason"]),
            f("balance_transaction", TEXT, "string", &["balance_transaction"]),
        ],
    },
    ObjectType {
        stream: "balance_transactions",
        object: "balance_transaction",
        path: "/v1/balance_transactions",
        list_params: &[],
        changes: Changes::Created,
        permission: "Balance",
        fields: &[
            f("id", TEXT, "string", &["id"]),
            f("created", TIME, "timestamp", &["created"]),
            f("type", TEXT, "enum", &["type"]),
            f("reporting_category", TEXT, "string", &["reporting_category"]),
            f("status", TEXT, "enum", &["status"]),
            f("currency", TEXT, "string", &["currency"]),
            f("amount", INT, "integer", &["amount"]),
            f("fee", INT, "integer", &["fee"]),
            f("net", INT, "integer", &["net"]),
            f("source", TEXT, "string", &["source"]),
            f("available_on", TIME, "timestamp", &["available_on"]),
        ],
    },
    ObjectType {
        stream: "events",
        object: "event",
        path: "/v1/events",
        list_params: &[],
        changes: Changes::Feed,
        permission: "Events",
        fields: &[
            f("id", TEXT, "string", &["id"]),
            f("created", TIME, "timestamp", &["created"]),
            f("livemode", BOOL, "boolean", &["livemode"]),
            f("type", TEXT, "string", &["type"]),
            f("api_version", TEXT, "string", &["api_version"]),
            Field { name: "object_type", sql_type: TEXT, stripe_type: "string", pick: Pick::EventObjectType },
            f("object_id", TEXT, "string", &["data.object.id"]),
            f("request_id", TEXT, "string", &["request.id", "request"]),
        ],
    },
];

/// The stream of this name.
pub fn by_stream(stream: &str) -> Option<&'static ObjectType> {
    OBJECTS.iter().find(|o| o.stream == stream)
}

/// The stream of objects of this `object` type.
pub fn by_object(object: &str) -> Option<&'static ObjectType> {
    OBJECTS.iter().find(|o| o.object == object && o.changes != Changes::Feed)
}

/// Stream names, for messages.
pub fn stream_names() -> String {
    OBJECTS.iter().map(|o| o.stream).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_keyed_by_id_and_named_once() {
        for o in OBJECTS {
            assert_eq!(o.fields[0].name, "id", "{}", o.stream);
            assert_eq!(by_stream(o.stream).map(|x| x.object), Some(o.object));
            let mut names: Vec<&str> = o.fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), o.fields.len(), "{}: a column twice", o.stream);
            assert!(!names.contains(&RAW) && !names.contains(&API_VERSION));
        }
        assert!(by_object("event").is_none(), "events are the feed, not objects routed to a stream");
    }
}
