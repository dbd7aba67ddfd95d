"""An MLflow pyfunc model over a keras_cnn SavedModel: uint8 pixels in, class probabilities out.

Logged as a "model from code": MLflow copies this file beside the SavedModel and runs it on load,
so it imports TensorFlow and MLflow only, never keras_cnn. The SavedModel does the run's
preprocessing inside its graph, so the pyfunc predicts exactly what TensorFlow Serving would.
"""

import mlflow
import numpy as np


class SavedModelClassifier(mlflow.pyfunc.PythonModel):
    # The logged tensor signature (uint8, N x H x W x C) checks the input; MLflow's validation by type
    # hints (and its warning that predict has none) is for models without one.
    _skip_type_hint_validation = True

    def load_context(self, context):
        import tensorflow as tf

        self._tf = tf
        self._serve = tf.saved_model.load(context.artifacts["saved_model"]).signatures["serving_default"]

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, dict):  # a named input, as MLflow's scoring server may pass it
            model_input = model_input["images"]
        images = self._tf.constant(np.asarray(model_input, dtype=np.uint8))
        return self._serve(images=images)["probabilities"].numpy()


mlflow.models.set_model(SavedModelClassifier())
