"""MLflow 3.17's experiment page driven in headless Chromium through WebDriver (Selenium with Debian's chromedriver):
the runs' validation MAP and training loss curves side by side in the chart view, as a researcher looks at a grid.

Everything is found by what MLflow's own components put in the page (data-testid / data-component-id, the charts'
titles and legends), the way a person finds it on screen, and clicked, typed into or dragged as a person would. One
script: a run's colour set in the colour picker's own <input type=color>, as a pick in the native colour dialog (which
WebDriver cannot reach) does; nothing else is set behind the UI's back (no localStorage)."""
import contextlib
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CURVES = ('map', 'train/loss_epoch')  # validation MAP per epoch, the training loss per epoch: left, right
UI_WAIT_S = 90  # the page's first render on 2 busy cores takes ~15 s; this is the bound, not the usual wait
CARD = '[data-testid="experiment-view-compare-runs-card"]'
DRAG_HANDLE = '[data-testid="experiment-view-compare-runs-card-drag-handle"]'
SECTION_HEADER = '[data-testid="experiment-view-compare-runs-section-header"]'
SEARCH = 'input[placeholder="Search metric charts"]'
# MLflow colours runs by a hash of their ids, so that two configurations can share a colour: one hue per sampling
# configuration (dark to light by seed), taken from MLflow's own palette, tells them apart in the curves
SHADES = {'random': ('#9e102c', '#c82d4c', '#e65b77'), 'balanced': ('#0e538b', '#2272b4', '#4299e0'),
          'balanced_weighted': ('#115026', '#277c43', '#3ba65e')}
SET_COLOUR = """const input = arguments[0];  // as picking a colour does: the native value set, then React told
Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, arguments[1]);
for (const name of ['input', 'change']) input.dispatchEvent(new Event(name, {bubbles: true}));"""
POINT_FILLS = """return Array.from(arguments[0].querySelectorAll('g.trace.scatter path.point'),
                  point => getComputedStyle(point).fill);"""  # the points' colours, as rgb(r, g, b)


@contextlib.contextmanager
def chromium(binary, driver_path, profile):
    """Chromium under chromedriver, both named by path: Selenium Manager (which would download a driver) never runs."""
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', f'--user-data-dir={profile}', '--hide-scrollbars',
                 '--window-size=1400,900'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(UI_WAIT_S)
        driver.set_script_timeout(UI_WAIT_S)
        yield driver
    finally:
        driver.quit()  # chromedriver and its Chromium end here, passed or failed


def wait_for(driver, what, condition):
    return WebDriverWait(driver, UI_WAIT_S, poll_frequency=0.5).until(
        condition, f'the MLflow UI did not show {what} in {UI_WAIT_S} s')


def press(driver, element):
    """A click in the middle of the window: the sticky search bar would take one at the top."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def click(driver, css):
    press(driver, wait_for(driver, css, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css)
                                                        if e.is_displayed() and e.is_enabled()), False)))


def section(driver, title):
    """The charts section (an accordion item) whose header reads `title`."""
    return driver.find_element(By.XPATH, f'//div[contains(@class, "collapse-item")][.//*[@data-testid='
                                         f'"experiment-view-compare-runs-section-header"]//*[normalize-space(text())'
                                         f'="{title}"]]')


def card_title(card):
    return card.find_element(By.CSS_SELECTOR, DRAG_HANDLE + ' + *').text.strip()  # the title follows the handle


def open_chart_view(driver, url):
    """The runs page in its chart view, the assistant panel that MLflow 3.17 opens on a first visit closed and the
    navigation sidebar folded, so the charts get the page's width."""
    driver.get(url + '?compareRunsMode=CHART')
    click(driver, '[data-component-id="mlflow.assistant.chat_panel.close"]')
    wait_for(driver, 'the assistant panel closed', lambda d: not d.find_elements(
        By.CSS_SELECTOR, '[data-component-id^="mlflow.assistant.chat_panel"]'))
    click(driver, '[data-component-id="mlflow_header.toggle_sidebar_button"]')
    wait_for(driver, 'the default chart sections', lambda d: len(d.find_elements(By.CSS_SELECTOR, SECTION_HEADER)) > 1)


def runs_listed(driver, names):
    """The names of `names` that the runs table shows, once it shows them all or after UI_WAIT_S."""
    with contextlib.suppress(TimeoutException):
        wait_for(driver, 'every run in the table', lambda d: all(f'>{n}<' in d.page_source for n in names))
    return [n for n in names if f'>{n}<' in driver.page_source]


def colour_by_configuration(driver, names):
    """Each run's colour set in the runs table's colour picker (an <input type=color> MLflow's row holds), one colour
    a run: {name: colour}."""
    colours = {}
    for name in names:
        configuration, seed = name.rsplit('-s', 1)
        colour = SHADES[configuration][int(seed) % 3]
        label = f'//label[@data-testid="experiment-view-table-run-color"][following-sibling::a[normalize-space(.)' \
                f'="{name}"]]'
        driver.execute_script(SET_COLOUR, driver.find_element(By.XPATH, label + '/input'), colour)
        wait_for(driver, f'{name} in {colour}',  # the label shows the colour the run now has
                 lambda d: d.find_element(By.XPATH, label).get_attribute('textContent') == colour)
        colours[name] = colour
    assert len(set(colours.values())) == len(colours), f'two runs share a colour: {colours}'
    return colours


def add_loss_beside_map(driver):
    """MLflow files `map` under "Model metrics" and the loss under "train", one section below the other: a line
    chart of the loss added beside `map` ("Add chart" > "Line chart", Y-axis metric = the loss alone)."""
    models = section(driver, 'Model metrics')
    press(driver, models.find_element(By.XPATH, './/button[contains(., "Add chart")]'))
    click(driver, '[data-testid="experiment-view-compare-runs-chart-type-line"]')
    dialog = wait_for(driver, 'the chart dialog', lambda d: d.find_element(By.CSS_SELECTOR, '[role="dialog"]'))
    metric = dialog.find_elements(By.CSS_SELECTOR, 'input[role="combobox"][type="search"]')[-1]  # Y-axis metric
    metric.click()
    metric.send_keys(CURVES[1])
    wait_for(driver, f'{CURVES[1]} offered', lambda d: any(
        o.get_attribute('textContent') == CURVES[1] for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]')))
    metric.send_keys(Keys.ENTER)
    for chosen in dialog.find_elements(By.CSS_SELECTOR, '.du-bois-light-select-selection-item'):
        if chosen.text != CURVES[1]:  # the dialog starts from the first metric, `map`
            chosen.find_element(By.CSS_SELECTOR, '.du-bois-light-select-selection-item-remove').click()
    assert [c.text for c in dialog.find_elements(By.CSS_SELECTOR, '.du-bois-light-select-selection-item')] == \
        [CURVES[1]], 'the new chart would not plot the training loss alone'
    click(driver, '[data-testid="experiment-view-compare-runs-chart-modal-confirm"]')
    wait_for(driver, 'the dialog closed', lambda d: not d.find_elements(By.CSS_SELECTOR, '[role="dialog"]'))


def show_only_the_curves(driver):
    """The chart search (a regular expression on metric names) keeps `map` and the loss; the loss's first chart,
    left alone under "train", is deleted so that one row of two charts remains."""
    search = driver.find_element(By.CSS_SELECTOR, SEARCH)
    search.send_keys('^(' + '|'.join(CURVES) + ')$')
    wait_for(driver, 'the search applied', lambda d: len(d.find_elements(By.CSS_SELECTOR, SECTION_HEADER)) == 2)
    duplicate = section(driver, 'train').find_element(By.CSS_SELECTOR, CARD)
    assert card_title(duplicate) == CURVES[1]
    press(driver, duplicate.find_element(By.CSS_SELECTOR, '[data-testid="experiment-view-compare-runs-card-menu"]'))
    click(driver, '[data-testid="experiment-view-compare-runs-card-delete"]')
    wait_for(driver, 'one section of two charts', lambda d: len(d.find_elements(By.CSS_SELECTOR, SECTION_HEADER))
             == 1 and len(d.find_elements(By.CSS_SELECTOR, CARD)) == 2)


def widen_cards(driver):
    """Each card dragged by its corner to half the section's width (MLflow snaps it to a column) and down to the
    window's bottom: the curves as large as the screenshot allows."""
    driver.execute_script('arguments[0].scrollIntoView()', driver.find_element(By.CSS_SELECTOR, SEARCH))  # charts up
    for i in range(2):
        handle = driver.find_elements(By.CSS_SELECTOR, '[data-testid="draggable-card-resize-handle"]')[i]
        card = driver.find_elements(By.CSS_SELECTOR, CARD)[i]
        box = card.rect
        wider = driver.find_element(By.CSS_SELECTOR, SECTION_HEADER).rect['width'] / 2 - box['width']
        taller = driver.execute_script('return window.innerHeight') - 45 - box['y'] - box['height']  # legend in view
        ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(10, 10) \
            .move_by_offset(int(wider) - 10, int(taller) - 10).release().perform()
        time.sleep(1)  # the grid re-lays the cards out after the drop
    # the pointer off the charts: no hover outline, no tooltip in the screenshot
    ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, 'h2')).perform()


def charts(driver, colours):
    """{chart title: [the runs of `colours` (name: '#rrggbb', one colour each) with points drawn in their colour]}:
    the legend names every run, with a curve or not; the points tell which runs have one."""
    rgb = {name: 'rgb({}, {}, {})'.format(*bytes.fromhex(colour[1:])) for name, colour in colours.items()}
    shown = {}
    for card in driver.find_elements(By.CSS_SELECTOR, CARD):
        fills = set(driver.execute_script(POINT_FILLS, card))
        shown[card_title(card)] = [name for name in colours if rgb[name] in fills]
    return shown


def plotted(driver, colours):
    """The charts once each draws every run's curve (they load after the page), or as they are after UI_WAIT_S."""
    with contextlib.suppress(TimeoutException):
        wait_for(driver, 'the curves drawn', lambda d: (shown := charts(d, colours)) and all(
            runs == list(colours) for runs in shown.values()))
    return charts(driver, colours)


def curves_side_by_side(driver, url, names, screenshot):
    """Drives the chart view to `CURVES` side by side, saves the screenshot; returns what the page shows: the run
    names in the runs table, {chart: [runs it draws]}, the charts' boxes, whether the assistant shows."""
    open_chart_view(driver, url)
    table = runs_listed(driver, names)
    colours = colour_by_configuration(driver, table)
    add_loss_beside_map(driver)
    show_only_the_curves(driver)
    widen_cards(driver)
    drawn = plotted(driver, colours)
    time.sleep(1)  # the plots' last re-layout after the resize
    boxes = [c.rect for c in driver.find_elements(By.CSS_SELECTOR, CARD)]
    assistant = bool(driver.find_elements(By.CSS_SELECTOR, '[data-component-id^="mlflow.assistant.chat_panel"]'))
    driver.save_screenshot(str(screenshot))
    return {'table': table, 'charts': drawn, 'boxes': boxes, 'assistant': assistant}

