"""The trained model as a product: a bundle folder (weights, model card, ONNX graph with the
preprocessing inside), made from a node's state folder or a simulation (`export`), read back
with every file's digest checked (`bundle`), and predictions for a table's rows (`predict`).

model.safetensors  the model's state dict (no pickle)
model.json         the model card: plan, feature columns, preprocessing, classes, consortium,
                   round, per-site validation metrics, privacy spent, and the SHA-256 of every
                   other file (`files`), checked before anything is read
model.onnx         raw columns in the plan's order -> class probabilities (`graph`)
"""
