//! MindSpore's checkpoint protobuf schema (`mindspore/ccsrc/utils/checkpoint.proto`, proto2, no
//! package), as hand-written prost messages, plus the few wire-format helpers the writer needs.
//!
//! ```text
//! message Checkpoint { message Value { required string tag = 1;
//!                        oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
//!                      repeated Value value = 1; }
//! message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
//!                       required bytes tensor_content = 3; }
//! message MapTensorProto { repeated TensorProto tensor = 1; }
//! ```
//! `dims` is proto2 unpacked (key 0x08 per dim) as MindSpore writes it; prost's decoder also
//! accepts the packed form (key 0x0A).

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// `Checkpoint.Value`: one named tensor (or one chunk of it) or a map tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, required, tag = "1")]
    pub tag: String,
    #[prost(oneof = "ValueKind", tags = "2, 3")]
    pub value: Option<ValueKind>,
}

/// The `oneof value` of `Checkpoint.Value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    #[prost(message, tag = "2")]
    Tensor(TensorProto),
    #[prost(message, tag = "3")]
    Maptensor(MapTensorProto),
}

/// `TensorProto`: full shape, MindSpore dtype name, raw little-endian C-order bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    #[prost(string, required, tag = "2")]
    pub tensor_type: String,
    #[prost(bytes = "vec", required, tag = "3")]
    pub tensor_content: Vec<u8>,
}

/// `MapTensorProto`: the key/value/status tensors of a MindSpore MapParameter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MapTensorProto {
    #[prost(message, repeated, tag = "1")]
    pub tensor: Vec<TensorProto>,
}

/// The serialized bytes of `Checkpoint { value: [Value { tag, tensor: TensorProto { dims,
/// tensor_type, tensor_content } }] }` up to (not including) the `content_len` content bytes,
/// which the caller appends. Same bytes as prost / the Python protobuf runtime produce
/// (fields in tag order, unpacked dims), without copying the content.
pub fn encode_record_header(
    tag: &str,
    dims: &[i64],
    tensor_type: &str,
    content_len: usize,
) -> Vec<u8> {
    let dims_len: usize = dims.iter().map(|&d| 1 + encoded_len_varint(d as u64)).sum();
    let tensor_len = dims_len
        + 1
        + encoded_len_varint(tensor_type.len() as u64)
        + tensor_type.len()
        + 1
        + encoded_len_varint(content_len as u64)
        + content_len;
    let value_len = 1
        + encoded_len_varint(tag.len() as u64)
        + tag.len()
        + 1
        + encoded_len_varint(tensor_len as u64)
        + tensor_len;
    let mut b = Vec::with_capacity(value_len - content_len + 16);
    encode_key(1, WireType::LengthDelimited, &mut b); // Checkpoint.value
    encode_varint(value_len as u64, &mut b);
    encode_key(1, WireType::LengthDelimited, &mut b); // Value.tag
    encode_varint(tag.len() as u64, &mut b);
    b.extend_from_slice(tag.as_bytes());
    encode_key(2, WireType::LengthDelimited, &mut b); // Value.tensor
    encode_varint(tensor_len as u64, &mut b);
    for &d in dims {
        encode_key(1, WireType::Varint, &mut b); // TensorProto.dims (unpacked)
        encode_varint(d as u64, &mut b);
    }
    encode_key(2, WireType::LengthDelimited, &mut b); // TensorProto.tensor_type
    encode_varint(tensor_type.len() as u64, &mut b);
    b.extend_from_slice(tensor_type.as_bytes());
    encode_key(3, WireType::LengthDelimited, &mut b); // TensorProto.tensor_content
    encode_varint(content_len as u64, &mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// `Checkpoint`: a list of tagged values. A `.ckpt` file is a concatenation of these: the
    /// reader decodes its `Value`s one by one and the writer encodes them with
    /// [`encode_record_header`], so the whole message only serves as the reference here.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Checkpoint {
        #[prost(message, repeated, tag = "1")]
        value: Vec<Value>,
    }

    #[test]
    fn checkpoint_header_matches_prost_encoding() {
        for (dims, content) in [
            (vec![64i64, 3, 7, 7], vec![7u8; 300]),
            (vec![0], vec![1, 2, 3, 4]),
            (vec![], vec![]),
            (vec![200_000], vec![9u8; 20_000]),
        ] {
            let msg = Checkpoint {
                value: vec![Value {
                    tag: "layer0.0.weight".into(),
                    value: Some(ValueKind::Tensor(TensorProto {
                        dims: dims.clone(),
                        tensor_type: "Float32".into(),
                        tensor_content: content.clone(),
                    })),
                }],
            };
            let mut ours = encode_record_header("layer0.0.weight", &dims, "Float32", content.len());
            ours.extend_from_slice(&content);
            assert_eq!(ours, msg.encode_to_vec(), "dims {dims:?}");
        }
    }

    #[test]
    fn packed_dims_decode_too() {
        // Value{tag "x", tensor{dims packed [2,3], "Int8", 6 bytes}}
        let mut t = vec![0x0a, 2, 2, 3, 0x12, 4];
        t.extend_from_slice(b"Int8");
        t.extend_from_slice(&[0x1a, 6, 1, 2, 3, 4, 5, 6]);
        let mut v = vec![0x0a, 1, b'x', 0x12, t.len() as u8];
        v.extend_from_slice(&t);
        let val = Value::decode(&v[..]).unwrap();
        match val.value {
            Some(ValueKind::Tensor(t)) => assert_eq!(t.dims, vec![2, 3]),
            other => panic!("{other:?}"),
        }
    }
}
