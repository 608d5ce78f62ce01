-- The live recap by product recomputes each touched (sale, catalog, product) group from its
-- lines: index them by group (the (sale, catalog) prefix serves the queries of the old index).
CREATE INDEX recap_lines_group ON recap_lines (sale_id, catalog_id, product_id);
DROP INDEX recap_lines_sale_catalog;
