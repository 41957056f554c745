"""msl_keras: Keras 3 reproduction of the multi-stage LSTM for action anticipation.

Aliakbarian, Saleh, Salzmann, Fernando, Petersson, Andersson. "Encouraging LSTMs to
Anticipate Actions Very Early", ICCV 2017.

TensorFlow only: the package runs Keras 3 on its TensorFlow backend and uses
TensorFlow directly where Keras has no public API (`tf.data`, `tf.function`,
`tf.distribute`, custom gradients). Other Keras backends are not supported.
"""

import os

# Keras 3 on TensorFlow only; set before keras is imported.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
