"""wsls.phantom: a procedural multi-modal brain phantom with tumour, stroke and MS-like lesions
(the demo's data), and semi-synthetic cases made by pasting real lesion masks into a template."""
