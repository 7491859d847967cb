"""Compare pare's logits (pare-logits.json) with Python `transformers` on the same folders.
Usage: python3 tools/hf-parity/check.py <dir made by make.ts> [out.json]"""
import json, sys, os
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoConfig
import transformers

root = sys.argv[1]
cases = json.load(open(os.path.join(root, "pare-logits.json")))
results = []
for c in cases:
    d = os.path.join(root, "models", c["name"])
    rec = {"name": c["name"]}
    try:
        cls = AutoModelForCausalLM if c["kind"] == "decoder" else AutoModelForSequenceClassification
        m = cls.from_pretrained(d, torch_dtype=torch.float64, attn_implementation="eager").eval()
        ids = torch.tensor([c["ids"]])
        kw = {}
        if c.get("attentionMask"):
            kw["attention_mask"] = torch.tensor([c["attentionMask"]])
        with torch.no_grad():
            lg = m(input_ids=ids, **kw).logits.double().flatten()
        pare = torch.tensor(c["logits"], dtype=torch.float64)
        rec["max_abs_diff"] = float((lg - pare).abs().max())
        rec["argmax_equal"] = bool(torch.equal(lg.view(c["shape"]).argmax(-1), pare.view(c["shape"]).argmax(-1)))
        rec["config_heads"] = [getattr(m.config, "num_attention_heads", None), getattr(m.config, "num_key_value_heads", None)]
    except Exception as e:  # report, don't stop
        rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    results.append(rec)
    print(json.dumps(rec))
summary = {"transformers": transformers.__version__, "torch": torch.__version__, "results": results}
if len(sys.argv) > 2:
    json.dump(summary, open(sys.argv[2], "w"), indent=1)
