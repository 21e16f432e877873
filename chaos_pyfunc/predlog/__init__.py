"""The prediction log: the table every scored row is kept in, and its writer (binary COPY, in a
process of its own: copy_worker). Independent of scoring; kept light: copy_worker starts with it."""
