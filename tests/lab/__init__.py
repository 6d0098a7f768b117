"""The NAT lab: real kernel NAT in network namespaces (see netlab, topologies, run_matrix)."""
