#!/usr/bin/env python3
"""Writes all-MiniLM-L6-v2 as ONNX (fp32, and int8 with dynamic quantisation).

Why by hand: the usual exporter (torch.onnx / optimum) needs PyTorch, a
multi-gigabyte install that build machines and CI cannot afford. A BERT
encoder is a short, fixed graph, so this script writes it with `onnx.helper`
from the same `model.safetensors` the candle embedder reads, and lets
onnxruntime's own quantiser make the int8 copy. The graph ends in
sentence-transformers' pooling (attention-masked mean, then L2 norm), so a
caller gets the sentence embedding directly.

Inputs:  input_ids int64 [batch, seq], attention_mask int64 [batch, seq]
Output:  embedding float32 [batch, 384] (unit length)

Usage: scripts/export-minilm-onnx.py MODEL_DIR [--int8]
  writes MODEL_DIR/model.onnx (needs: pip install onnx numpy safetensors);
  --int8 also writes MODEL_DIR/model_int8.onnx, dynamically quantised with
  per-channel weights (needs onnxruntime), for benchmarking.
"""

import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def build(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"unsupported activation {cfg['hidden_act']}")

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, prefix, out):
        # torch Linear stores [out, in]; MatMul wants [in, out].
        weight = const(prefix + ".weight_t", w[prefix + ".weight"].T.copy())
        bias = const(prefix + ".bias", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, weight], out + "_mm"), bias], out)

    def layer_norm(x, prefix, out):
        scale = const(prefix + ".weight", w[prefix + ".weight"])
        bias = const(prefix + ".bias", w[prefix + ".bias"])
        return node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)

    # Embeddings: word + position + token type 0 (we never send segment ids).
    word = const("word_embeddings", w["embeddings.word_embeddings.weight"])
    pos_table = const("position_embeddings", w["embeddings.position_embeddings.weight"])
    type0 = const("token_type0", w["embeddings.token_type_embeddings.weight"][0])
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [shape, const("one_i", np.array(1, dtype=np.int64))], "seq_len")
    positions = node(
        "Range",
        [const("zero_i", np.array(0, dtype=np.int64)), seq, const("step_i", np.array(1, dtype=np.int64))],
        "positions",
    )
    x = node("Gather", [word, "input_ids"], "tok_emb")
    x = node("Add", [x, node("Gather", [pos_table, positions], "pos_emb")], "emb_sum")
    x = node("Add", [x, type0], "emb_typed")
    x = layer_norm(x, "embeddings.LayerNorm", "emb")

    # Additive attention bias: 0 for tokens, a large negative for padding.
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), mask_f], "mask_inv")
    bias = node("Mul", [inverted, const("neg_big", np.array(-1e4, dtype=np.float32))], "mask_bias")
    bias = node("Unsqueeze", [bias, const("axes_1_2", np.array([1, 2], dtype=np.int64))], "attn_bias")

    split_shape = const("split_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("attn_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    inv_sqrt2 = const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        t = f"l{i}"

        def heads_of(name, perm):
            lin = linear(x, f"{p}.attention.self.{name}", f"{t}_{name}")
            split = node("Reshape", [lin, split_shape], f"{t}_{name}_split")
            return node("Transpose", [split], f"{t}_{name}_heads", perm=perm)

        q = heads_of("query", [0, 2, 1, 3])
        k = heads_of("key", [0, 2, 3, 1])
        v = heads_of("value", [0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{t}_qk"), scale], f"{t}_scaled")
        probs = node("Softmax", [node("Add", [scores, bias], f"{t}_masked")], f"{t}_probs", axis=-1)
        ctx = node("MatMul", [probs, v], f"{t}_ctx")
        ctx = node("Transpose", [ctx], f"{t}_ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"{t}_ctx_merged")
        attn = linear(ctx, f"{p}.attention.output.dense", f"{t}_attn_out")
        x = layer_norm(node("Add", [attn, x], f"{t}_attn_res"), f"{p}.attention.output.LayerNorm", f"{t}_attn_ln")

        h = linear(x, f"{p}.intermediate.dense", f"{t}_inter")
        # Exact (erf) GELU, as BERT's "gelu".
        erf = node("Erf", [node("Mul", [h, inv_sqrt2], f"{t}_gelu_s")], f"{t}_gelu_erf")
        gate = node("Add", [erf, const(f"{t}_one", np.array(1.0, dtype=np.float32))], f"{t}_gelu_1p")
        h = node("Mul", [node("Mul", [h, gate], f"{t}_gelu_m"), half], f"{t}_gelu")
        out = linear(h, f"{p}.output.dense", f"{t}_out")
        x = layer_norm(node("Add", [out, x], f"{t}_out_res"), f"{p}.output.LayerNorm", f"{t}_out_ln")

    # Mean pooling over real tokens, then L2 normalisation.
    mask3 = node("Unsqueeze", [mask_f, const("axes_2", np.array([2], dtype=np.int64))], "mask3")
    summed = node("ReduceSum", [node("Mul", [x, mask3], "masked_hidden"), const("axes_1", np.array([1], dtype=np.int64))], "summed", keepdims=0)
    counts = node("ReduceSum", [mask3, "axes_1"], "counts", keepdims=0)
    counts = node("Max", [counts, const("tiny", np.array(1e-9, dtype=np.float32))], "counts_safe")
    pooled = node("Div", [summed, counts], "pooled")
    norm = node("ReduceL2", [pooled, const("axes_last", np.array([-1], dtype=np.int64))], "norm", keepdims=1)
    norm = node("Max", [norm, const("tiny_norm", np.array(1e-12, dtype=np.float32))], "norm_safe")
    nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"], name="embedding"))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="trusty-search")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    args = sys.argv[1:]
    int8 = "--int8" in args
    args = [a for a in args if a != "--int8"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    model_dir = args[0]
    fp32 = os.path.join(model_dir, "model.onnx")
    # Write beside and rename, so a half-written graph is never picked up.
    onnx.save(build(model_dir), fp32 + ".tmp")
    os.replace(fp32 + ".tmp", fp32)
    print(f"wrote {fp32}")
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = os.path.join(model_dir, "model_int8.onnx")
        quantize_dynamic(
            fp32, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul"]
        )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
