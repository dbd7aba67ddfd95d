"""Deployable files beside the SavedModel: LiteRT (TFLite) float32, float16 and int8, and ONNX.

    formats.parse("tflite,tflite-int8,onnx")   # -> the Format entries, SavedModel first
    runtime.load("exports/mlp-mnist/2/model_int8.tflite").predict(uint8_images)

Every format takes uint8 pixels of the training size and does the run's preprocessing inside,
like the SavedModel's serving_default; report.py scores each against the SavedModel.
"""
