"""The latent browser: static, self-contained HTML pages of latents (no server, no CDN, no warehouse reads).

Layout under the site root (``browser.dir``, default ``data/browser``)::

    index.html                     every partition's latents: sortable, filterable, searchable
    compare.html                   explainers compared on the same latents (paired differences)
    static/browser.css, browser.js the one stylesheet and script (no third-party code)
    <layer>/<range>/index.html     one partition's latents
    <layer>/<range>/compare.html   the same comparison within the partition
    <layer>/<range>/latents/N.html one page per latent with examples or explanations
    <layer>/<range>/partition.json the partition's index rows (the site pages are rebuilt from these)
    <layer>/<range>/search.npz     explanation embeddings for the search of ``autointerp browse``

``site.write_partition`` writes one partition from dashboard records (``core.dashboard``) and
``site.write_site`` rebuilds the cross-partition pages from the ``partition.json`` files alone, so a
partition's pages are made from one short warehouse read and never hold a connection while writing.
``server.serve`` serves the root on 127.0.0.1 (plus ``/api/search``).
"""
