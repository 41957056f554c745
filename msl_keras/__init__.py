"""msl_keras: Keras 3 reproduction of the multi-stage LSTM for action anticipation.

Aliakbarian, Saleh, Salzmann, Fernando, Petersson, Andersson. "Encouraging LSTMs to
Anticipate Actions Very Early", ICCV 2017.
"""

import os

# The package is written for Keras 3 on TensorFlow; set it before keras is imported.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
