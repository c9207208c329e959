//! `bootstrap_extensions`: process-wide extensions, by type.

use super::node::{Errors, Fields, Node};

const INTERNAL_LISTENER: &str =
    "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener";
const TYPED_STRUCT: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];

#[rustfmt::skip]
static EXTENSION: Fields = Fields { known: &["name", "typed_config"], unsupported: &[] };
#[rustfmt::skip]
static INTERNAL_LISTENER_FIELDS: Fields = Fields {
    known: &["@type", "buffer_size_kb"],
    unsupported: &[],
};
#[rustfmt::skip]
static TYPED_STRUCT_FIELDS: Fields = Fields {
    known: &["@type", "type_url", "value"],
    unsupported: &[],
};

/// Decodes `bootstrap_extensions`. The one Ringway takes is
/// `InternalListener` (Istio's bootstrap carries it): in Envoy it only
/// makes internal listeners possible, and Ringway refuses those where they
/// are named (a listener's `internal_listener`, an `envoy_internal_address`),
/// so taking it changes nothing. Any other extension is refused by type.
pub fn bootstrap_extensions(node: &Node, errs: &mut Errors) {
    for item in node.list(errs) {
        let Some(ext) = item.object(errs, &EXTENSION) else {
            continue;
        };
        if let Some(name) = ext.get("name") {
            name.str(errs);
        }
        let Some(config) = ext.require(errs, "typed_config") else {
            continue;
        };
        let Some(kind) = super::bootstrap::type_url(&config, errs) else {
            continue;
        };
        // A TypedStruct carries the extension's type and fields inside.
        let (kind, fields) = if TYPED_STRUCT.contains(&kind) {
            let Some(s) = config.object(errs, &TYPED_STRUCT_FIELDS) else {
                continue;
            };
            let inner = s
                .get("type_url")
                .and_then(|t| t.str(errs))
                .unwrap_or_default();
            match s.get("value") {
                Some(v) => (inner, v),
                None => {
                    errs.add(config.path(), "expected a value");
                    continue;
                }
            }
        } else {
            (kind, config.clone())
        };
        if kind != INTERNAL_LISTENER {
            errs.add(
                config.path(),
                format!("bootstrap extension {kind:?} is not supported yet"),
            );
            continue;
        }
        let Some(obj) = fields.object(errs, &INTERNAL_LISTENER_FIELDS) else {
            continue;
        };
        if let Some(size) = obj.get("buffer_size_kb") {
            let kb = super::bootstrap::wrapped_uint(&size, errs, u64::from(u32::MAX));
            if kb.is_some_and(|kb| !(1..=8192).contains(&kb)) {
                errs.add(size.path(), "value must be inside range [1, 8192]");
            }
        }
    }
}
