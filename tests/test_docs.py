"""Every relative link of README.md and docs/*.md leads somewhere: the file exists, and the anchor, where one is
given, is a heading of that file (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens)."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')


def anchors(path):
    """The anchors GitHub makes for a Markdown file's headings (duplicates get -1, -2...)."""
    seen, found = {}, set()
    in_code = False
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.startswith('```'):
                in_code = not in_code
            match = None if in_code else re.match(r'^#{1,6} (.*?)\s*#*\s*$', line)
            if match:
                text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', match.group(1))  # a link's text only
                slug = re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')
                count = seen.get(slug, 0)
                seen[slug] = count + 1
                found.add(slug if count == 0 else f'{slug}-{count}')
    return found


def links(path):
    in_code = False
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if line.startswith('```'):
                in_code = not in_code
            if in_code:
                continue
            for match in LINK.finditer(re.sub(r'`[^`]*`', '', line)):
                target = match.group(1) or match.group(2)
                if not re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
                    yield number, target


@pytest.mark.parametrize('page', PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for number, target in links(page):
        file_part, _, anchor = target.partition('#')
        path = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) if file_part else page
        if not os.path.exists(path):
            broken.append(f'line {number}: {target} (no file {os.path.relpath(path, ROOT)})')
        elif anchor and path.endswith('.md') and anchor not in anchors(path):
            broken.append(f'line {number}: {target} (no heading #{anchor} in {os.path.relpath(path, ROOT)})')
    assert not broken, '\n'.join(broken)


def test_the_link_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# A title, with punctuation!\n\n[ok](#a-title-with-punctuation) [bad](#nowhere) '
                    '[file](missing.md) `[code](not-a-link.md)`\n')
    assert anchors(str(page)) == {'a-title-with-punctuation'}
    assert [t for _, t in links(str(page))] == ['#a-title-with-punctuation', '#nowhere', 'missing.md']
