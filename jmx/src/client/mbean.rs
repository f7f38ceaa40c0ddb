//! What `getMBeanInfo` says about an MBean, read from the `MBeanInfo` the agent returns.

use crate::value::JavaValue;

/// What `getMBeanInfo` says about an MBean.
#[derive(Debug, Clone, PartialEq)]
pub struct MBeanInfo {
    pub class_name: String,
    pub description: Option<String>,
    pub attributes: Vec<MBeanAttribute>,
    pub operations: Vec<MBeanOperation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanAttribute {
    pub name: String,
    pub type_name: String,
    pub readable: bool,
    pub writable: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanOperation {
    pub name: String,
    pub return_type: String,
    pub parameters: Vec<MBeanParameter>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanParameter {
    pub name: String,
    pub type_name: String,
}

/// Reads the parts of an `MBeanInfo` people look at.
pub(super) fn mbean_info(info: &JavaValue) -> MBeanInfo {
    let text = |value: Option<&JavaValue>| value.and_then(JavaValue::as_str).map(str::to_string);
    let items = |field: &str| {
        info.get(field)
            .and_then(JavaValue::as_slice)
            .unwrap_or_default()
            .to_vec()
    };
    MBeanInfo {
        class_name: text(info.get("className")).unwrap_or_default(),
        description: text(info.get("description")),
        attributes: items("attributes")
            .iter()
            .map(|a| MBeanAttribute {
                name: text(a.get("name")).unwrap_or_default(),
                type_name: text(a.get("attributeType")).unwrap_or_default(),
                readable: a
                    .get("isRead")
                    .and_then(JavaValue::as_bool)
                    .unwrap_or(false),
                writable: a
                    .get("isWrite")
                    .and_then(JavaValue::as_bool)
                    .unwrap_or(false),
                description: text(a.get("description")),
            })
            .collect(),
        operations: items("operations")
            .iter()
            .map(|o| MBeanOperation {
                name: text(o.get("name")).unwrap_or_default(),
                return_type: text(o.get("type")).unwrap_or_default(),
                parameters: o
                    .get("signature")
                    .and_then(JavaValue::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| MBeanParameter {
                        name: text(p.get("name")).unwrap_or_default(),
                        type_name: text(p.get("type")).unwrap_or_default(),
                    })
                    .collect(),
                description: text(o.get("description")),
            })
            .collect(),
    }
}
