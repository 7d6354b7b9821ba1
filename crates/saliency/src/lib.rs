//! Montabone–Soto static fine-grained saliency (OpenCV's `StaticSaliencyFineGrained`), bit-exact.
