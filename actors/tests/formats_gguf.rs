//! GGUF reader tests: metadata of every type, tensor infos, alignment, truncation at every prefix, hostile
//! lengths, seeded mutation fuzzing, dequantization known answers, Q/K permutation, and the real SmolLM2 file.

use half::f16;
use sparring_actors::formats::gguf::{
    GgufFile, GgufHfView, GgufWriter, MetaType, MetaValue, gguf_to_hf_name, hf_to_gguf_name,
    permute_qk, unpermute_qk,
};
use sparring_actors::formats::quant::{GgmlType, dequantize};
use sparring_actors::formats::{FormatError, TensorSource};

fn arr(elem: MetaType, items: Vec<MetaValue>) -> MetaValue {
    MetaValue::Array { elem, items }
}

fn every_type_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .meta("u8", MetaValue::U8(200))
        .meta("i8", MetaValue::I8(-100))
        .meta("u16", MetaValue::U16(60000))
        .meta("i16", MetaValue::I16(-30000))
        .meta("u32", MetaValue::U32(4_000_000_000))
        .meta("i32", MetaValue::I32(-2_000_000_000))
        .meta("f32", MetaValue::F32(1.5))
        .meta("bool", MetaValue::Bool(true))
        .meta("string", MetaValue::String("héllo ☕".into()))
        .meta("u64", MetaValue::U64(u64::MAX))
        .meta("i64", MetaValue::I64(i64::MIN))
        .meta("f64", MetaValue::F64(-2.25))
        .meta("arr.empty", arr(MetaType::F32, vec![]))
        .meta(
            "arr.str",
            arr(
                MetaType::String,
                vec![MetaValue::String("a".into()), MetaValue::String("".into())],
            ),
        )
        .meta(
            "arr.nested",
            arr(
                MetaType::Array,
                vec![
                    arr(MetaType::I32, vec![MetaValue::I32(1), MetaValue::I32(-2)]),
                    arr(MetaType::Bool, vec![MetaValue::Bool(false)]),
                ],
            ),
        );
    w.tensor_f32("a", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    w.tensor(
        "b",
        vec![4],
        GgmlType::F16,
        [1.0f32, -2.0, 0.5, 65504.0]
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
    );
    w
}

#[test]
fn every_metadata_type_round_trips_v2_and_v3() {
    for version in [2, 3] {
        let mut w = every_type_writer();
        w.version = version;
        let g = GgufFile::parse(w.to_bytes()).unwrap();
        assert_eq!(g.version, version);
        assert_eq!(g.metadata, w.metadata);
        assert_eq!(g.meta_str("string").unwrap(), "héllo ☕");
        assert_eq!(g.meta_usize("u32").unwrap(), 4_000_000_000);
        assert_eq!(g.meta_f64("f32").unwrap(), 1.5);
        assert!(g.meta_usize("i8").is_err());
        assert_eq!(g.meta_str_array("arr.str").unwrap(), vec!["a", ""]);
        assert_eq!(g.alignment, 32);
        assert_eq!(g.data_offset % 32, 0);
    }
}

#[test]
fn tensor_infos_shapes_and_data() {
    let g = GgufFile::parse(every_type_writer().to_bytes()).unwrap();
    let a = g.tensor("a").unwrap();
    assert_eq!(a.dims, vec![3, 2]);
    assert_eq!(a.shape(), vec![2, 3]);
    assert_eq!(a.ty, GgmlType::F32);
    let (shape, data) = g.tensor_f32("a").unwrap();
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (shape, data) = g.get_f32("b").unwrap();
    assert_eq!(shape, vec![4]);
    assert_eq!(data, vec![1.0, -2.0, 0.5, 65504.0]);
    assert_eq!(g.names(), vec!["a", "b"]);
    assert!(
        g.tensor_f32("missing")
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = every_type_writer();
    w.alignment = 64;
    let bytes = w.to_bytes();
    let g = GgufFile::parse(bytes).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset % 64, 0);
    assert_eq!(g.tensor("b").unwrap().offset % 64, 0);
    assert_eq!(g.tensor_f32("b").unwrap().1[3], 65504.0);
}

#[test]
fn bf16_and_other_plain_types() {
    let mut w = GgufWriter::new();
    w.tensor(
        "bf",
        vec![2],
        GgmlType::BF16,
        [0x3F80u16, 0xC040]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    );
    w.tensor("i8", vec![2], GgmlType::I8, vec![0xFF, 7]);
    w.tensor("f64", vec![1], GgmlType::F64, 2.5f64.to_le_bytes().to_vec());
    let g = GgufFile::parse(w.to_bytes()).unwrap();
    assert_eq!(g.tensor_f32("bf").unwrap().1, vec![1.0, -3.0]);
    assert_eq!(g.tensor_f32("i8").unwrap().1, vec![-1.0, 7.0]);
    assert_eq!(g.tensor_f32("f64").unwrap().1, vec![2.5]);
}

fn msg(e: FormatError) -> String {
    e.to_string()
}

#[test]
fn every_truncated_prefix_is_an_error_naming_an_offset() {
    let bytes = every_type_writer().to_bytes();
    for n in 0..bytes.len() {
        let e = GgufFile::parse(bytes[..n].to_vec());
        let m = msg(e.expect_err(&format!("prefix {n} parsed")));
        assert!(m.contains("byte"), "prefix {n}: error names no offset: {m}");
    }
    assert!(GgufFile::parse(bytes).is_ok());
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn kv_prefix(b: &mut Vec<u8>, key: &str, ty: u32) {
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&ty.to_le_bytes());
}

#[test]
fn hostile_lengths_are_rejected_before_allocating() {
    // A string length of 1e12.
    let mut b = header(0, 1);
    kv_prefix(&mut b, "k", 8);
    b.extend_from_slice(&1_000_000_000_000u64.to_le_bytes());
    b.extend_from_slice(b"abc");
    let m = msg(GgufFile::parse(b).unwrap_err());
    assert!(m.contains("string length 1000000000000 at byte 37"), "{m}");

    // A key length of u64::MAX.
    let mut b = header(0, 1);
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    let m = msg(GgufFile::parse(b).unwrap_err());
    assert!(
        m.contains("string length 18446744073709551615 at byte 24"),
        "{m}"
    );

    // An array of 2^62 u64s.
    let mut b = header(0, 1);
    kv_prefix(&mut b, "k", 9);
    b.extend_from_slice(&10u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let m = msg(GgufFile::parse(b).unwrap_err());
    assert!(
        m.contains("array length") && m.contains("at byte 41"),
        "{m}"
    );

    // Counts far beyond the file.
    let m = msg(GgufFile::parse(header(u64::MAX, 0)).unwrap_err());
    assert!(m.contains("tensor count") && m.contains("byte 8"), "{m}");
    let m = msg(GgufFile::parse(header(0, 1 << 40)).unwrap_err());
    assert!(m.contains("metadata count") && m.contains("byte 16"), "{m}");

    // Arrays nested 1000 deep.
    let mut b = header(0, 1);
    kv_prefix(&mut b, "k", 9);
    for _ in 0..1000 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    let m = msg(GgufFile::parse(b).unwrap_err());
    assert!(m.contains("nested"), "{m}");
}

#[test]
fn invalid_headers_and_tensor_infos_are_rejected() {
    let m = msg(GgufFile::parse(b"GGUG\x03\0\0\0".to_vec()).unwrap_err());
    assert!(m.contains("magic"), "{m}");
    let mut b = header(0, 0);
    b[4] = 1;
    assert!(msg(GgufFile::parse(b).unwrap_err()).contains("version 1"));
    let mut b = header(0, 0);
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(msg(GgufFile::parse(b).unwrap_err()).contains("big-endian"));

    // Unknown value type.
    let mut b = header(0, 1);
    kv_prefix(&mut b, "k", 13);
    assert!(msg(GgufFile::parse(b).unwrap_err()).contains("unknown value type 13 at byte 33"));

    // Duplicate key.
    let mut w = GgufWriter::new();
    w.meta("k", MetaValue::U8(1)).meta("k", MetaValue::U8(2));
    assert!(msg(GgufFile::parse(w.to_bytes()).unwrap_err()).contains("duplicate metadata key"));

    // Bad alignment value.
    let mut w = GgufWriter::new();
    w.meta("general.alignment", MetaValue::U32(48));
    assert!(msg(GgufFile::parse(w.to_bytes()).unwrap_err()).contains("general.alignment"));

    // Quantized tensor whose row is not a whole number of blocks.
    let mut w = GgufWriter::new();
    w.tensor("q", vec![16], GgmlType::Q8_0, vec![0; 17]);
    assert!(msg(GgufFile::parse(w.to_bytes()).unwrap_err()).contains("block size"));

    // Tensor data past the end of the file.
    let mut w = GgufWriter::new();
    w.tensor_f32("t", &[4], &[0.0; 4]);
    let mut bytes = w.to_bytes();
    bytes.truncate(bytes.len() - 1);
    assert!(msg(GgufFile::parse(bytes).unwrap_err()).contains("past the end"));

    // Unaligned tensor offset: patch the offset field (last 8 bytes of the tensor info).
    let mut w = GgufWriter::new();
    w.tensor_f32("t", &[4], &[0.0; 4]);
    let mut bytes = w.to_bytes();
    let info_end = 24 + 8 + 1 + 4 + 8 + 4 + 8;
    bytes[info_end - 8] = 4;
    assert!(msg(GgufFile::parse(bytes).unwrap_err()).contains("not a multiple of the alignment"));

    // Too many dimensions.
    let mut b = header(1, 0);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b't');
    b.extend_from_slice(&5u32.to_le_bytes());
    b.extend_from_slice(&[0; 32]);
    assert!(msg(GgufFile::parse(b).unwrap_err()).contains("5 dimensions at byte 33"));
}

#[test]
fn seeded_mutations_never_panic() {
    let base = every_type_writer().to_bytes();
    let mut rng = sparring_engine::rng::SplitMix64::new(42);
    let mut ok = 0;
    for _ in 0..10_000 {
        let mut b = base.clone();
        let n_mut = 1 + rng.next_u64() % 4;
        for _ in 0..n_mut {
            let i = (rng.next_u64() % b.len() as u64) as usize;
            match rng.next_u64() % 4 {
                0 => b[i] = rng.next_u64() as u8,
                1 => b[i] ^= 1 << (rng.next_u64() % 8),
                2 => b.truncate(i),
                _ => b[i] = [0u8, 0xFF, 0x7F, 0x80][(rng.next_u64() % 4) as usize],
            }
            if b.is_empty() {
                break;
            }
        }
        if let Ok(g) = GgufFile::parse(b) {
            ok += 1;
            for t in g.names() {
                let _ = g.tensor_f32(&t);
            }
        }
    }
    // Mutations in tensor data or string contents still parse; most others don't.
    assert!(ok > 0 && ok < 10_000, "{ok}");
}

// ---------------------------------------------------------------- dequantization

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

#[test]
fn q8_0_known_answer() {
    let mut b = h(0.5).to_vec();
    let qs: [i8; 32] = std::array::from_fn(|j| match j {
        0 => -128,
        1 => -1,
        2 => 0,
        3 => 1,
        4 => 127,
        j => j as i8,
    });
    b.extend(qs.iter().map(|&q| q as u8));
    let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
    assert_eq!(&y[..5], &[-64.0, -0.5, 0.0, 0.5, 63.5]);
    assert_eq!(y[31], 15.5);
}

fn nibble_block() -> Vec<u8> {
    // byte j: low nibble j (element j), high nibble 15-j (element j+16)
    (0..16u8).map(|j| j | ((15 - j) << 4)).collect()
}

#[test]
fn q4_0_known_answer() {
    let mut b = h(2.0).to_vec();
    b.extend(nibble_block());
    let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
    // (q - 8) * d: low nibbles are elements 0..16, high nibbles 16..32
    assert_eq!(y[0], -16.0);
    assert_eq!(y[8], 0.0);
    assert_eq!(y[15], 14.0);
    assert_eq!(y[16], 14.0);
    assert_eq!(y[31], -16.0);
}

#[test]
fn q4_1_known_answer() {
    let mut b = h(0.5).to_vec();
    b.extend(h(-1.0));
    b.extend(nibble_block());
    let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
    // q * d + m
    assert_eq!(y[0], -1.0);
    assert_eq!(y[3], 0.5);
    assert_eq!(y[15], 6.5);
    assert_eq!(y[16], 6.5);
    assert_eq!(y[20], 4.5);
    assert_eq!(y[31], -1.0);
}

#[test]
fn q4_k_known_answer() {
    let mut b = h(1.0).to_vec();
    b.extend(h(0.5));
    // (scale, min) pairs: 0:(1,5) 1:(2,6) 2:(3,7) 3:(4,8) 4:(17,2) 5:(3,4) 6:(5,6) 7:(7,40)
    b.extend([
        1 | (1 << 6),
        2,
        3,
        4,
        5,
        6,
        7,
        8 | (2 << 6),
        0x21,
        0x43,
        0x65,
        0x87,
    ]);
    for _ in 0..4 {
        for l in 0..32u8 {
            b.push((l % 16) | ((15 - l % 16) << 4));
        }
    }
    let y = dequantize(GgmlType::Q4_K, &b, 256).unwrap();
    // y = d*sc*q - dmin*m; sub-block 2c uses low nibbles of chunk c, 2c+1 the high nibbles.
    assert_eq!(y[0], -2.5); // 1*0 - 0.5*5
    assert_eq!(y[33], 25.0); // 2*14 - 3
    assert_eq!(y[4 * 32 + 3], 50.0); // 17*3 - 1
    assert_eq!(y[5 * 32 + 16], 43.0); // 3*15 - 2
    assert_eq!(y[6 * 32], -3.0); // 5*0 - 3
    assert_eq!(y[7 * 32 + 31], -20.0); // 7*0 - 20
}

#[test]
fn q6_k_known_answer() {
    let mut b = vec![0u8; 210];
    b[0] = 0xA5; // ql[0]: low 5 (element 0), high 10 (element 64)
    b[32] = 0x0F; // ql[32]: low 15 (element 32), high 0 (element 96)
    b[128] = 0b11_10_01_00; // qh[0]: bits for elements 0, 32, 64, 96
    for i in 0..16 {
        b[192 + i] = (i as i8 - 8) as u8;
    }
    b[208..210].copy_from_slice(&h(0.25));
    let y = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
    // y = d * sc * (q - 32)
    assert_eq!(y[0], 54.0); // 0.25 * -8 * (5 - 32)
    assert_eq!(y[32], 1.5); // 0.25 * -6 * (31 - 32)
    assert_eq!(y[64], -10.0); // 0.25 * -4 * (42 - 32)
    assert_eq!(y[96], -8.0); // 0.25 * -2 * (48 - 32)
    assert_eq!(y[1], 64.0); // 0.25 * -8 * -32
    assert_eq!(y[16], 56.0); // scale 1
    assert_eq!(y[128], 0.0); // scale 8 = 0
    assert_eq!(y[255], -56.0); // scale 15 = 7
}

/// Reference values computed with llama.cpp's gguf-py (`gguf.quants.dequantize`, version 0.17) on two blocks whose
/// byte i is `(37 i + 11 + 101 block) mod 256`, with the f16 scale fields set to (0.0625, second field 0.125 or
/// -0.5) times (block + 1). Tuple: (type, sum of (i+1)*y[i], sum |y|, y at [0,1,15,16,31,33,n/2+5,n-1]).
const REFERENCE: &[(&str, f64, f64, [f64; 8])] = &[
    (
        "Q4_0",
        -138.5,
        23.9375,
        [-0.1875, 0.125, -0.5, -0.1875, 0.0, 0.875, -0.625, 0.75],
    ),
    (
        "Q4_1",
        -257.8125,
        24.8125,
        [0.4375, -0.25, 0.125, 0.0625, 0.25, 0.125, 0.625, -0.75],
    ),
    (
        "Q5_0",
        -282.875,
        44.6875,
        [0.5625, -0.125, -0.75, 0.875, 0.0625, 0.375, 0.875, -1.125],
    ),
    (
        "Q5_1",
        1470.3125,
        55.6875,
        [0.6875, 1.0, 1.375, 0.6875, -0.1875, 0.625, -0.875, 0.5],
    ),
    (
        "Q8_0",
        1119.0,
        379.0,
        [5.3125, 7.625, -8.0, -5.6875, -3.0, -4.125, 14.375, 6.625],
    ),
    (
        "Q2_K",
        -29492.25,
        569.9375,
        [2.0625, 0.0, 1.375, -0.375, -0.375, -0.625, -1.75, 1.875],
    ),
    (
        "Q3_K",
        -2034.5625,
        1628.125,
        [5.0625, -6.75, -3.375, -6.0, 4.0, 2.75, -4.0, 0.0],
    ),
    (
        "Q4_K",
        1650716.5,
        7460.75,
        [14.9375, -6.375, 5.25, 14.9375, 5.25, -1.0, -1.5, 1.125],
    ),
    (
        "Q5_K",
        4186917.5,
        16031.25,
        [45.9375, -6.375, 5.25, 45.9375, 5.25, -2.5, 6.5, 34.875],
    ),
    (
        "Q6_K",
        -251313.75,
        53921.375,
        [-89.4375, 106.0, -19.875, -27.0, -6.0, -42.0, -42.0, -227.5],
    ),
];

#[test]
fn all_quant_types_match_gguf_py_reference() {
    for (name, wsum, asum, picks) in REFERENCE {
        let (ty, fields): (GgmlType, &[(usize, f32)]) = match *name {
            "Q4_0" => (GgmlType::Q4_0, &[(0, 0.0625)]),
            "Q4_1" => (GgmlType::Q4_1, &[(0, 0.0625), (2, -0.5)]),
            "Q5_0" => (GgmlType::Q5_0, &[(0, 0.0625)]),
            "Q5_1" => (GgmlType::Q5_1, &[(0, 0.0625), (2, -0.5)]),
            "Q8_0" => (GgmlType::Q8_0, &[(0, 0.0625)]),
            "Q2_K" => (GgmlType::Q2_K, &[(80, 0.0625), (82, 0.125)]),
            "Q3_K" => (GgmlType::Q3_K, &[(108, 0.0625)]),
            "Q4_K" => (GgmlType::Q4_K, &[(0, 0.0625), (2, 0.125)]),
            "Q5_K" => (GgmlType::Q5_K, &[(0, 0.0625), (2, 0.125)]),
            "Q6_K" => (GgmlType::Q6_K, &[(208, 0.0625)]),
            _ => unreachable!(),
        };
        let size = ty.type_size();
        let mut bytes = Vec::new();
        for bi in 0..2usize {
            let mut b: Vec<u8> = (0..size)
                .map(|i| ((i * 37 + 11 + 101 * bi) & 0xFF) as u8)
                .collect();
            for &(off, v) in fields {
                b[off..off + 2].copy_from_slice(&h(v * (bi + 1) as f32));
            }
            bytes.extend(b);
        }
        let n = 2 * ty.block_size();
        let y = dequantize(ty, &bytes, n).unwrap();
        let got_w: f64 = y
            .iter()
            .enumerate()
            .map(|(i, &v)| (i + 1) as f64 * v as f64)
            .sum();
        let got_a: f64 = y.iter().map(|&v| (v as f64).abs()).sum();
        assert_eq!(got_w, *wsum, "{name} weighted sum");
        assert_eq!(got_a, *asum, "{name} abs sum");
        let idx = [0, 1, 15, 16, 31, 33, n / 2 + 5, n - 1];
        for (k, &i) in idx.iter().enumerate() {
            assert_eq!(y[i] as f64, picks[k], "{name} y[{i}]");
        }
    }
}

#[test]
fn dequantize_rejects_wrong_sizes() {
    assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
    assert!(dequantize(GgmlType::Q8_0, &[0; 34], 31).is_err());
    assert!(dequantize(GgmlType::Other(16), &[0; 66], 256).is_err());
}

// ---------------------------------------------------------------- names and Q/K permutation

#[test]
fn hf_names_round_trip() {
    for (g, h) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        (
            "blk.12.attn_q.weight",
            "model.layers.12.self_attn.q_proj.weight",
        ),
        ("blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
        (
            "blk.3.attn_output.weight",
            "model.layers.3.self_attn.o_proj.weight",
        ),
        (
            "blk.3.ffn_gate.weight",
            "model.layers.3.mlp.gate_proj.weight",
        ),
        (
            "blk.3.ffn_down.weight",
            "model.layers.3.mlp.down_proj.weight",
        ),
        (
            "blk.3.ffn_norm.weight",
            "model.layers.3.post_attention_layernorm.weight",
        ),
        (
            "blk.3.attn_norm.weight",
            "model.layers.3.input_layernorm.weight",
        ),
    ] {
        assert_eq!(gguf_to_hf_name(g).as_deref(), Some(h));
        assert_eq!(hf_to_gguf_name(h).as_deref(), Some(g));
    }
    assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
}

#[test]
fn qk_unpermute_matches_llama_cpp_permute() {
    // One head of dim 4, 1 column: HF rows [r0 r1 | r2 r3] (halves) are stored by llama.cpp as [r0 r2 r1 r3].
    let gguf = [0.0, 2.0, 1.0, 3.0];
    assert_eq!(
        unpermute_qk(&gguf, &[4, 1], 1).unwrap(),
        vec![0.0, 1.0, 2.0, 3.0]
    );
    // Two heads of dim 4, 2 columns; round trip.
    let hf: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let g = permute_qk(&hf, &[8, 2], 2).unwrap();
    assert_eq!(&g[..8], &[0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]);
    assert_eq!(unpermute_qk(&g, &[8, 2], 2).unwrap(), hf);
    assert!(unpermute_qk(&hf, &[8, 2], 3).is_err());
}

#[test]
fn hf_view_renames_and_unpermutes() {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .meta("llama.attention.head_count", MetaValue::U32(2))
        .meta("llama.attention.head_count_kv", MetaValue::U32(1));
    let q: Vec<f32> = (0..8).map(|v| v as f32).collect();
    w.tensor_f32("blk.0.attn_q.weight", &[8, 1], &q);
    w.tensor_f32("blk.0.attn_k.weight", &[4, 1], &q[..4]);
    w.tensor_f32("blk.0.attn_v.weight", &[4, 1], &q[..4]);
    w.tensor_f32("rope_freqs.weight", &[2], &[1.0, 1.0]);
    let g = GgufFile::parse(w.to_bytes()).unwrap();
    let v = GgufHfView::new(&g).unwrap();
    assert_eq!(
        v.names(),
        vec![
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight"
        ]
    );
    let (_, qd) = v.get_f32("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(qd, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    let (_, kd) = v.get_f32("model.layers.0.self_attn.k_proj.weight").unwrap();
    assert_eq!(kd, vec![0.0, 2.0, 1.0, 3.0]);
    let (_, vd) = v.get_f32("model.layers.0.self_attn.v_proj.weight").unwrap();
    assert_eq!(vd, vec![0.0, 1.0, 2.0, 3.0]);
}

// ---------------------------------------------------------------- the real SmolLM2 file

fn smollm2_path() -> Option<std::path::PathBuf> {
    sparring_actors::testing::smollm2_or_skip("formats_gguf")
}

#[test]
fn smollm2_parses_with_expected_tensors() {
    let Some(path) = smollm2_path() else { return };
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.meta_usize("llama.block_count").unwrap(), 30);
    assert_eq!(g.meta_usize("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.meta_usize("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(g.meta_usize("llama.attention.head_count").unwrap(), 9);
    assert_eq!(g.meta_usize("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(g.meta_f64("llama.rope.freq_base").unwrap(), 100000.0);
    assert!(
        (g.meta_f64("llama.attention.layer_norm_rms_epsilon")
            .unwrap()
            - 1e-5)
            .abs()
            < 1e-9
    );
    assert_eq!(g.meta_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(g.meta_array("tokenizer.ggml.tokens").unwrap().len(), 49152);

    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.ty, GgmlType::Q8_0);
    assert_eq!(emb.shape(), vec![49152, 576]);
    assert!(g.tensor("output.weight").is_none(), "tied embeddings");
    assert_eq!(g.tensor("output_norm.weight").unwrap().ty, GgmlType::F32);
    let expect: [(&str, [usize; 2]); 7] = [
        ("attn_q", [576, 576]),
        ("attn_k", [192, 576]),
        ("attn_v", [192, 576]),
        ("attn_output", [576, 576]),
        ("ffn_gate", [1536, 576]),
        ("ffn_up", [1536, 576]),
        ("ffn_down", [576, 1536]),
    ];
    for l in 0..30 {
        for (part, shape) in expect {
            let t = g.tensor(&format!("blk.{l}.{part}.weight")).unwrap();
            assert_eq!(t.shape(), shape.to_vec(), "blk.{l}.{part}");
            assert_eq!(t.ty, GgmlType::Q4_1, "blk.{l}.{part}");
        }
        for norm in ["attn_norm", "ffn_norm"] {
            let t = g.tensor(&format!("blk.{l}.{norm}.weight")).unwrap();
            assert_eq!((t.shape(), t.ty), (vec![576], GgmlType::F32));
        }
    }
    assert_eq!(g.tensors.len(), 1 + 1 + 30 * 9);
    let mut n = 0usize;
    for name in g.names() {
        let (shape, data) = g.tensor_f32(&name).unwrap();
        assert_eq!(shape.iter().product::<usize>(), data.len());
        assert!(data.iter().all(|v| v.is_finite()), "{name}");
        n += data.len();
    }
    assert_eq!(n, 134_515_008);

    // Reference checksums from gguf-py (`GGUFReader` + `quants.dequantize`): (name, sum of y[i]*(i%1000+1),
    // sum |y|, y at [0, 1, 31, 32, n-1]).
    let reference: [(&str, f64, f64, [f64; 5]); 4] = [
        (
            "token_embd.weight",
            -7633473.04289484,
            2802153.619805813,
            [
                -0.10654449462890625,
                0.032978057861328125,
                -0.20040512084960938,
                -0.09348678588867188,
                -0.0417022705078125,
            ],
        ),
        (
            "blk.0.attn_q.weight",
            9388.28125,
            63395.39872741699,
            [
                -0.0963134765625,
                0.1573486328125,
                -0.0963134765625,
                -0.34619140625,
                -0.255859375,
            ],
        ),
        (
            "blk.29.ffn_down.weight",
            -724.3623352050781,
            126250.91435241699,
            [
                -0.2733154296875,
                0.186279296875,
                -0.2733154296875,
                0.026611328125,
                0.056640625,
            ],
        ),
        (
            "output_norm.weight",
            299776.453125,
            1045.09765625,
            [1.7578125, 1.8203125, 1.828125, 1.875, 1.984375],
        ),
    ];
    for (name, wsum, asum, picks) in reference {
        let (_, y) = g.tensor_f32(name).unwrap();
        let got_w: f64 = y
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * ((i % 1000) + 1) as f64)
            .sum();
        let got_a: f64 = y.iter().map(|&v| (v as f64).abs()).sum();
        assert!(
            (got_w - wsum).abs() <= 1e-9 * wsum.abs().max(1.0),
            "{name}: {got_w} vs {wsum}"
        );
        assert!(
            (got_a - asum).abs() <= 1e-9 * asum,
            "{name}: {got_a} vs {asum}"
        );
        let n = y.len();
        for (k, i) in [0, 1, 31, 32, n - 1].into_iter().enumerate() {
            assert_eq!(y[i] as f64, picks[k], "{name}[{i}]");
        }
    }
}

#[test]
fn parallel_dequantize_equals_serial() {
    use sparring_actors::formats::quant::{PARALLEL_THRESHOLD, dequantize_into};
    let n_blocks = PARALLEL_THRESHOLD / 256 + 7;
    let mut data = Vec::with_capacity(n_blocks * 144);
    for b in 0..n_blocks {
        let mut blk: Vec<u8> = (0..144).map(|i| ((i * 31 + b * 7) & 0xFF) as u8).collect();
        blk[0..2].copy_from_slice(&h(0.01));
        blk[2..4].copy_from_slice(&h(0.02));
        data.extend(blk);
    }
    let par = dequantize(GgmlType::Q4_K, &data, n_blocks * 256).unwrap();
    let mut ser = vec![0f32; n_blocks * 256];
    dequantize_into(GgmlType::Q4_K, &data, &mut ser).unwrap();
    assert!(par == ser);
}

/// CI sets `SPARRING_REQUIRE_MODEL=1` after `scripts/fetch-model.sh`: there, a missing model must fail instead of
/// letting the model tests skip.
#[test]
fn the_model_is_there_when_required() {
    // Panics when SPARRING_REQUIRE_MODEL is set and the model is missing (the rule every model test follows).
    let _ = sparring_actors::testing::smollm2_or_skip("the_model_is_there_when_required");
}
