"""Neural networks on weight spaces: the ScaleGMN encoder, its graph view and the scatter shim."""
from .config import EncoderConfig
from .graph import DenseGraph, EdgeListGraph, GraphLayout, dense_graph, edge_list_graph, graph_layout
from .probe import FunctionProbe
from .scalegmn import ScaleGMNEncoder
from .scalegmn_layer import ScaleGMNLayer
from .scatter import has_torch_scatter, scatter_backend, scatter_sum

__all__ = ["EncoderConfig", "FunctionProbe", "ScaleGMNEncoder", "ScaleGMNLayer", "DenseGraph", "EdgeListGraph",
           "GraphLayout", "dense_graph", "edge_list_graph", "graph_layout", "scatter_sum", "scatter_backend", "has_torch_scatter"]
